//! The credential operations of `State::apply` and the credential reads, with upstream's ownership checks.
//!
//! Upstream's `CredentialServer` checks ownership through `Inspect` (Read, "Access denied to
//! X") and then, for Update and Delete, Admin ("Only admin access type to credential is
//! allowed to ..."); DeleteReferences needs Read only and ignores a missing credential.
//! Credentials are found by id, then by name (names are unique in custos).

use super::{Change, Record, RecordKey, State};
use crate::command::{Command, Reply};
use crate::credential::{
    self, Credential, CredentialId, CredentialSpec, SealedSecret, SecretField, MAX_CREDENTIALS,
};
use crate::identity::Identity;
use crate::ownership::{permitted, AccessType, Acls, Ownership};
use crate::rejection::Rejection;
use std::collections::BTreeMap;

/// Upstream's refusal of an empty credential id in Delete, Validate and Update's lookup.
pub const MUST_PROVIDE_CREDENTIAL_ID: &str = "Must provide credentials uuid";

/// The credentials, by id, with a name index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct CredentialBook {
    pub(super) by_id: BTreeMap<CredentialId, Credential>,
    pub(super) names: BTreeMap<String, CredentialId>,
}

impl CredentialBook {
    pub(super) fn put(&mut self, c: Credential) {
        if let Some(old) = self.by_id.remove(&c.id) {
            self.names.remove(&old.spec.name);
        }
        self.names.insert(c.spec.name.clone(), c.id.clone());
        self.by_id.insert(c.id.clone(), c);
    }

    pub(super) fn delete(&mut self, id: &CredentialId) {
        if let Some(old) = self.by_id.remove(id) {
            self.names.remove(&old.spec.name);
        }
    }

    /// By id, then by name.
    fn find(&self, id_or_name: &str) -> Option<&Credential> {
        self.by_id
            .get(&CredentialId(id_or_name.to_string()))
            .or_else(|| self.names.get(id_or_name).and_then(|id| self.by_id.get(id)))
    }
}

impl State {
    /// `Credentials.Inspect`'s lookup and check: the credential named by id or name, if the
    /// caller may read it.
    pub fn inspect_credential(
        &self,
        who: &Identity,
        id_or_name: &str,
    ) -> Result<&Credential, Rejection> {
        if id_or_name.is_empty() {
            return Err(Rejection::invalid("Must provide a credential id"));
        }
        let c = self
            .credentials
            .find(id_or_name)
            .ok_or_else(|| credential::not_found(id_or_name))?;
        if !permitted(who, c.ownership.as_ref(), AccessType::Read) {
            return Err(Rejection::denied(format!("Access denied to {id_or_name}")));
        }
        Ok(c)
    }

    /// `Credentials.Enumerate`: the credentials the caller may read, in id order.
    pub fn readable_credentials<'a>(
        &'a self,
        who: &'a Identity,
    ) -> impl Iterator<Item = &'a Credential> + 'a {
        self.credentials
            .by_id
            .values()
            .filter(move |c| permitted(who, c.ownership.as_ref(), AccessType::Read))
    }

    pub fn credential_count(&self) -> usize {
        self.credentials.by_id.len()
    }

    /// Read, then Admin, as upstream's Update and Delete check.
    fn credential_for_admin(
        &self,
        who: &Identity,
        id_or_name: &str,
        verb: &str,
    ) -> Result<&Credential, Rejection> {
        let c = self.inspect_credential(who, id_or_name)?;
        if !permitted(who, c.ownership.as_ref(), AccessType::Admin) {
            return Err(Rejection::denied(format!(
                "Only admin access type to credential is allowed to {verb} {id_or_name}"
            )));
        }
        Ok(c)
    }

    /// `Credentials.Create`. The owner is the caller (a guest's credential has no owner), the
    /// request's ACLs are kept, as for volumes. Names are unique.
    pub(super) fn create_credential(
        &self,
        cmd: &Command,
        id: &CredentialId,
        spec: &CredentialSpec,
        acls: &Acls,
        secrets: &BTreeMap<SecretField, SealedSecret>,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let who = &cmd.identity;
        spec.validate_create(secrets)?;
        check_secret_fields(spec, secrets)?;
        if id.as_str().is_empty() {
            return Err(Rejection::invalid("Must supply a credential id"));
        }
        if self.credentials.by_id.contains_key(id) {
            return Err(Rejection::exists(format!(
                "Credential id {id} already exists"
            )));
        }
        if self.credentials.names.contains_key(&spec.name) {
            return Err(Rejection::exists(format!(
                "Credential name {} already exists",
                spec.name
            )));
        }
        if self.credentials.by_id.len() >= MAX_CREDENTIALS {
            return Err(Rejection::exhausted(format!(
                "{MAX_CREDENTIALS} credentials are stored, the most custos keeps"
            )));
        }
        let ownership = (!who.guest).then(|| Ownership {
            owner: who.username.clone(),
            acls: acls.clone(),
        });
        changes.push(Change::Put(Record::Credential(Credential {
            id: id.clone(),
            spec: spec.clone(),
            ownership,
            secrets: secrets.clone(),
            created_ms: cmd.time_ms,
            updated_ms: cmd.time_ms,
        })));
        Ok(Reply::CredentialCreated { id: id.clone() })
    }

    /// `Credentials.Update`: Read then Admin on the credential; fields merge as upstream's.
    pub(super) fn update_credential(
        &self,
        cmd: &Command,
        id_or_name: &str,
        spec: &CredentialSpec,
        secrets: &BTreeMap<SecretField, SealedSecret>,
        sealed_for: &CredentialId,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if id_or_name.is_empty() {
            return Err(Rejection::invalid("Must supply credentialId"));
        }
        if matches!(spec.kind, credential::CredentialKind::Nfs { .. }) {
            // Upstream's Update knows the AWS, Azure and Google types only.
            return Err(Rejection::invalid("Unknown credential type"));
        }
        let c = self.credential_for_admin(&cmd.identity, id_or_name, "update")?;
        check_secret_fields(spec, secrets)?;
        if !secrets.is_empty() && *sealed_for != c.id {
            return Err(Rejection::precondition(format!(
                "Credential {id_or_name} is now credential {}, not {sealed_for} as when the \
                 update was sent: retry",
                c.id
            )));
        }
        let updated = c.updated(spec, secrets, cmd.time_ms)?;
        if updated.spec.name != c.spec.name {
            if let Some(other) = self.credentials.names.get(&updated.spec.name) {
                if *other != c.id {
                    return Err(Rejection::exists(format!(
                        "Credential name {} already exists",
                        updated.spec.name
                    )));
                }
            }
        }
        let id = c.id.clone();
        changes.push(Change::Put(Record::Credential(updated)));
        Ok(Reply::CredentialUpdated { id })
    }

    /// `Credentials.Delete`: Read then Admin. A missing credential is NotFound (upstream's
    /// Delete inspects first).
    pub(super) fn delete_credential(
        &self,
        cmd: &Command,
        id_or_name: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if id_or_name.is_empty() {
            return Err(Rejection::invalid(MUST_PROVIDE_CREDENTIAL_ID));
        }
        let c = self.credential_for_admin(&cmd.identity, id_or_name, "delete")?;
        let id = c.id.clone();
        changes.push(Change::Delete(RecordKey::Credential(id.clone())));
        Ok(Reply::CredentialDeleted { id })
    }

    /// `Credentials.DeleteReferences`: Read on the credential (a missing one is no error, as
    /// upstream). No custos object references a credential (volumes carry no credential id
    /// at SDK 0.101.39; cloud backups and cluster pairs, which do upstream, are not served),
    /// so there is nothing to remove: the call is decided and audited, and changes nothing.
    pub(super) fn delete_credential_references(
        &self,
        cmd: &Command,
        id_or_name: &str,
    ) -> Result<Reply, Rejection> {
        if id_or_name.is_empty() {
            return Err(Rejection::invalid("Must provide credentials name/uuid"));
        }
        match self.inspect_credential(&cmd.identity, id_or_name) {
            Ok(_) => Ok(Reply::Empty),
            Err(r) if r.code == crate::rejection::Code::NotFound => Ok(Reply::Empty),
            Err(r) => Err(r),
        }
    }
}

/// A secret a credential's type does not carry is refused (it would be kept and never used).
fn check_secret_fields(
    spec: &CredentialSpec,
    secrets: &BTreeMap<SecretField, SealedSecret>,
) -> Result<(), Rejection> {
    match secrets.keys().find(|f| !spec.allows_secret(**f)) {
        Some(f) => Err(Rejection::invalid(format!(
            "A credential of type {} has no field {}",
            spec.kind.name(),
            f.name()
        ))),
        None => Ok(()),
    }
}
