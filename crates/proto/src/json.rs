//! JSON for the REST gateway: OpenAPI (JSON Schema) definitions of `openstorage.api` messages,
//! derived from the embedded descriptor set so they always match the proto3 JSON mapping the
//! generated serde code uses (proto field names, enums by name, 64-bit integers as strings).

use crate::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The protobuf package whose messages the REST gateway carries.
const PACKAGE: &str = "openstorage.api";

/// A definition could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the embedded descriptor set does not decode: {0}")]
    Descriptor(#[from] prost::DecodeError),
    #[error("no message {0} in the descriptor set")]
    UnknownMessage(String),
}

enum Def<'a> {
    Message(&'a DescriptorProto),
    Enum(&'a EnumDescriptorProto),
}

/// Every message and enum of the set by fully qualified name (`.openstorage.api.Volume`).
fn index(set: &FileDescriptorSet) -> BTreeMap<String, Def<'_>> {
    fn walk<'a>(prefix: &str, m: &'a DescriptorProto, out: &mut BTreeMap<String, Def<'a>>) {
        let name = format!("{prefix}.{}", m.name());
        for e in &m.enum_type {
            out.insert(format!("{name}.{}", e.name()), Def::Enum(e));
        }
        for n in &m.nested_type {
            walk(&name, n, out);
        }
        out.insert(name, Def::Message(m));
    }
    let mut out = BTreeMap::new();
    for file in &set.file {
        let prefix = format!(".{}", file.package());
        for e in &file.enum_type {
            out.insert(format!("{prefix}.{}", e.name()), Def::Enum(e));
        }
        for m in &file.message_type {
            walk(&prefix, m, &mut out);
        }
    }
    out
}

/// The schema name of a fully qualified type: relative to the package, nesting kept with dots
/// (`Ownership.AccessControl`).
fn schema_name(full: &str) -> String {
    full.trim_start_matches('.')
        .strip_prefix(PACKAGE)
        .map(|s| s.trim_start_matches('.').to_string())
        .unwrap_or_else(|| full.trim_start_matches('.').to_string())
}

fn reference(full: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", schema_name(full)) })
}

struct Builder<'a> {
    index: BTreeMap<String, Def<'a>>,
    schemas: Map<String, Value>,
}

impl Builder<'_> {
    /// The schema of one value of `field` (the element type for repeated fields).
    fn scalar(&mut self, field: &FieldDescriptorProto) -> Value {
        match field.r#type() {
            Type::Double | Type::Float => json!({ "type": "number" }),
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Type::Uint32 | Type::Fixed32 => json!({ "type": "integer", "format": "uint32" }),
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
                json!({ "type": "string", "format": "int64" })
            }
            Type::Uint64 | Type::Fixed64 => json!({ "type": "string", "format": "uint64" }),
            Type::Bool => json!({ "type": "boolean" }),
            Type::String => json!({ "type": "string" }),
            Type::Bytes => json!({ "type": "string", "format": "byte" }),
            Type::Enum => {
                self.define(field.type_name());
                reference(field.type_name())
            }
            Type::Message | Type::Group => match field.type_name() {
                ".google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
                name => {
                    if let Some(Def::Message(m)) = self.index.get(name) {
                        if m.options.as_ref().is_some_and(|o| o.map_entry()) {
                            let value = m.field.iter().find(|f| f.number() == 2).cloned();
                            let value = value.map_or(json!({}), |v| self.scalar(&v));
                            return json!({ "type": "object", "additionalProperties": value });
                        }
                    }
                    self.define(name);
                    reference(name)
                }
            },
        }
    }

    /// Adds the definition of `full` (and of every type it reaches) unless present.
    fn define(&mut self, full: &str) {
        let name = schema_name(full);
        if self.schemas.contains_key(&name) {
            return;
        }
        let schema = match self.index.get(full) {
            Some(Def::Enum(e)) => {
                let names: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
                json!({ "type": "string", "enum": names })
            }
            Some(Def::Message(m)) => {
                // Placeholder first, so recursive types terminate.
                self.schemas.insert(name.clone(), json!({}));
                let fields = m.field.clone();
                let mut properties = Map::new();
                for f in &fields {
                    let one = self.scalar(f);
                    let is_map = one.get("additionalProperties").is_some();
                    let schema = if f.label() == Label::Repeated && !is_map {
                        json!({ "type": "array", "items": one })
                    } else {
                        one
                    };
                    properties.insert(f.name().to_string(), schema);
                }
                json!({ "type": "object", "properties": properties })
            }
            None => json!({ "type": "object", "description": format!("{full} (not described)") }),
        };
        self.schemas.insert(name, schema);
    }
}

fn descriptor_set() -> Result<&'static FileDescriptorSet, SchemaError> {
    static SET: std::sync::OnceLock<FileDescriptorSet> = std::sync::OnceLock::new();
    if let Some(set) = SET.get() {
        return Ok(set);
    }
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)?;
    Ok(SET.get_or_init(|| set))
}

/// Whether the field at dotted `path` (`options.deep`) of `openstorage.api.<message>` is a
/// `bool`: a query string carries bools as `true`/`false` text, which proto3 JSON does not take.
pub fn is_bool_field(message: &str, path: &str) -> bool {
    let Ok(set) = descriptor_set() else {
        return false;
    };
    let index = index(set);
    let mut current = format!(".{PACKAGE}.{message}");
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(Def::Message(m)) = index.get(&current) else {
            return false;
        };
        let Some(field) = m
            .field
            .iter()
            .find(|f| f.name() == part || f.json_name() == part)
        else {
            return false;
        };
        if parts.peek().is_none() {
            return field.r#type() == Type::Bool && field.label() != Label::Repeated;
        }
        current = field.type_name().to_string();
    }
    false
}

/// OpenAPI `components.schemas` for the named messages and every message and enum they reach:
/// `openstorage.api` messages by short name (`SdkVolumeCreateRequest`), others by full name,
/// with or without the leading dot (`.custos.admin.v1.ExplainRequest`,
/// `custos.admin.v1.AuditListReply`); their schemas keep the full name without the dot.
pub fn openapi_schemas(messages: &[&str]) -> Result<Map<String, Value>, SchemaError> {
    let set = descriptor_set()?;
    let mut builder = Builder {
        index: index(set),
        schemas: Map::new(),
    };
    for m in messages {
        let full = if m.starts_with('.') {
            m.to_string()
        } else if m.contains('.') {
            format!(".{m}")
        } else {
            format!(".{PACKAGE}.{m}")
        };
        if !matches!(builder.index.get(&full), Some(Def::Message(_))) {
            return Err(SchemaError::UnknownMessage(full[1..].to_string()));
        }
        builder.define(&full);
    }
    Ok(builder.schemas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openstorage::api::{
        volume_spec_update, CosType, SdkVolumeCreateRequest, SdkVolumeInspectResponse,
        SdkVolumeUpdateRequest, Volume, VolumeSpec, VolumeSpecUpdate,
    };

    #[test]
    fn schemas_follow_the_json_mapping() {
        let s = openapi_schemas(&["SdkVolumeCreateRequest", "SdkVolumeInspectResponse"]).unwrap();
        let create = &s["SdkVolumeCreateRequest"]["properties"];
        assert_eq!(create["name"], json!({"type": "string"}));
        assert_eq!(
            create["spec"],
            json!({"$ref": "#/components/schemas/VolumeSpec"})
        );
        assert_eq!(
            create["labels"],
            json!({"type": "object", "additionalProperties": {"type": "string"}})
        );
        let spec = &s["VolumeSpec"]["properties"];
        assert_eq!(spec["size"], json!({"type": "string", "format": "uint64"}));
        assert_eq!(
            spec["ha_level"],
            json!({"type": "string", "format": "int64"})
        );
        assert!(s["CosType"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("HIGH")));
        assert_eq!(
            s["Volume"]["properties"]["ctime"],
            json!({"type": "string", "format": "date-time"})
        );
        assert!(s.contains_key("Ownership.AccessControl"));
        assert!(is_bool_field("SdkVolumeInspectRequest", "options.deep"));
        assert!(is_bool_field("VolumeSpec", "shared"));
        assert!(!is_bool_field("SdkVolumeInspectRequest", "volume_id"));
        assert!(!is_bool_field("SdkVolumeInspectRequest", "options.nope"));
        assert!(!is_bool_field("NoSuchMessage", "x"));
        assert!(matches!(
            openapi_schemas(&["NoSuchMessage"]),
            Err(SchemaError::UnknownMessage(_))
        ));
    }

    #[test]
    fn json_uses_proto_names_and_reads_camel_case_too() {
        let request = SdkVolumeCreateRequest {
            name: "v".into(),
            spec: Some(VolumeSpec {
                size: 1 << 30,
                ha_level: 2,
                cos: CosType::High as i32,
                ..Default::default()
            }),
            labels: Default::default(),
        };
        let text = serde_json::to_value(&request).unwrap();
        assert_eq!(
            text,
            json!({"name": "v", "spec": {"size": "1073741824", "ha_level": "2", "cos": "HIGH"}})
        );
        let camel: SdkVolumeCreateRequest = serde_json::from_value(
            json!({"name": "v", "spec": {"size": 1073741824, "haLevel": "2", "cos": "HIGH"}}),
        )
        .unwrap();
        assert_eq!(camel, request);
        // A oneof carries its member's name; a Timestamp is RFC 3339.
        let update: SdkVolumeUpdateRequest =
            serde_json::from_value(json!({"volume_id": "x", "spec": {"size": "5"}})).unwrap();
        assert_eq!(
            update.spec,
            Some(VolumeSpecUpdate {
                size_opt: Some(volume_spec_update::SizeOpt::Size(5)),
                ..Default::default()
            })
        );
        let inspect = SdkVolumeInspectResponse {
            volume: Some(Volume {
                ctime: Some(pbjson_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&inspect).unwrap()["volume"]["ctime"],
            json!("1970-01-01T00:00:01+00:00")
        );
        assert!(serde_json::from_value::<SdkVolumeCreateRequest>(json!({"nope": 1})).is_err());
    }

    #[test]
    fn custos_admin_messages_have_schemas_and_json_too() {
        use crate::custos::admin::v1::{AuditFilter, AuditListRequest};
        let s = openapi_schemas(&["custos.admin.v1.AuditListRequest"]).unwrap();
        assert_eq!(
            s["custos.admin.v1.AuditListRequest"]["properties"]["filter"],
            json!({"$ref": "#/components/schemas/custos.admin.v1.AuditFilter"})
        );
        assert_eq!(
            s["custos.admin.v1.AuditFilter"]["properties"]["authorized"],
            json!({"type": "boolean"})
        );
        assert!(matches!(
            openapi_schemas(&["custos.admin.v1.NoSuch"]),
            Err(SchemaError::UnknownMessage(m)) if m == "custos.admin.v1.NoSuch"
        ));
        // An unset optional bool is left out; a set one, false included, is written.
        let request = AuditListRequest {
            filter: Some(AuditFilter {
                from_seq: 7,
                authorized: Some(false),
                ..Default::default()
            }),
            newest_first: true,
            ..Default::default()
        };
        let text = serde_json::to_value(&request).unwrap();
        assert_eq!(
            text,
            json!({"filter": {"from_seq": "7", "authorized": false}, "newest_first": true})
        );
        assert_eq!(
            serde_json::from_value::<AuditListRequest>(text).unwrap(),
            request
        );
    }
}
