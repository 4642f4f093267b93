//! Data-driven token cases: `data/tokens.cases` is run through the authenticator and the outcomes
//! are compared with `data/tokens.golden` (regenerate with `UPDATE_EXPECT=1 cargo test -p custos-auth`).
//!
//! Case syntax (one block per case, `#` starts a comment line):
//!
//! ```text
//! === name of the case
//! auth: default                  # authenticator variant (see common::authenticator)
//! header: {"alg":"HS256"}        # raw JOSE header text; default {"alg":"<sign alg>","typ":"JWT"}
//! claims: {"iss":"custos-test"}  # raw payload text; `$now`, `$now+N`, `$now-N`, `$std` expand
//! sign: hmac-a HS256             # signer and algorithm (default), or `none` for an empty signature
//! tamper: {...}                  # payload text swapped in after signing
//! authorization: Bearer {token}  # the metadata value (default); `<absent>` for no header,
//!                                # `<empty>` for an empty one; {h} {p} {s} are the segments,
//!                                # {p=} is the payload with base64 padding,
//!                                # {space} is a space, {pad:N} is N times `A`
//! ```

mod common;

use std::fmt::Write as _;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::{alg, authenticator, signer, NOW};
use expect_test::expect_file;

/// The standard valid claim set, spliced in with `$std`.
const STD: &str = r#""iss":"custos-test","sub":"alice","name":"Alice","email":"alice@example.com","iat":$now,"exp":$now+3600"#;

#[derive(Default)]
struct Case {
    name: String,
    auth: Option<String>,
    header: Option<String>,
    claims: Option<String>,
    sign: Option<String>,
    tamper: Option<String>,
    authorization: Option<String>,
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case {
                name: name.to_string(),
                ..Case::default()
            });
            continue;
        }
        let case = cases
            .last_mut()
            .unwrap_or_else(|| panic!("line {}: directive before the first case", n + 1));
        let (key, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("line {}: expected `key: value`", n + 1));
        let value = value.strip_prefix(' ').unwrap_or(value);
        let slot = match key {
            "auth" => &mut case.auth,
            "header" => &mut case.header,
            "claims" => &mut case.claims,
            "sign" => &mut case.sign,
            "tamper" => &mut case.tamper,
            "authorization" => &mut case.authorization,
            other => panic!("line {}: unknown directive {other:?}", n + 1),
        };
        assert!(slot.is_none(), "line {}: {key} given twice", n + 1);
        *slot = Some(value.to_string());
    }
    cases
}

/// Expands `$std` and `$now[+-N]`.
fn expand(text: &str) -> String {
    let text = text.replace("$std", STD);
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("$now") {
        out.push_str(&rest[..i]);
        rest = &rest[i + 4..];
        let sign = rest.chars().next().filter(|c| *c == '+' || *c == '-');
        let mut value = NOW as i128;
        if let Some(sign) = sign {
            let digits: String = rest[1..].chars().take_while(char::is_ascii_digit).collect();
            let n: i128 = digits.parse().unwrap();
            value += if sign == '+' { n } else { -n };
            rest = &rest[1 + digits.len()..];
        }
        write!(out, "{value}").unwrap();
    }
    out.push_str(rest);
    out
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Builds the `authorization` value of a case.
fn authorization(case: &Case) -> Option<String> {
    let (signer_name, alg_name) = match case.sign.as_deref().unwrap_or("hmac-a HS256") {
        "none" => ("none", "none"),
        s => s.split_once(' ').expect("sign: <signer> <ALG>"),
    };
    let header = case
        .header
        .as_deref()
        .map(expand)
        .unwrap_or_else(|| format!(r#"{{"alg":"{alg_name}","typ":"JWT"}}"#));
    let claims = expand(case.claims.as_deref().unwrap_or("{$std}"));
    let (h, mut p) = (b64(&header), b64(&claims));
    let s = if signer_name == "none" {
        String::new()
    } else {
        let message = format!("{h}.{p}");
        jsonwebtoken::crypto::sign(message.as_bytes(), &signer(signer_name), alg(alg_name)).unwrap()
    };
    if let Some(tampered) = &case.tamper {
        p = b64(&expand(tampered));
    }
    let template = case.authorization.as_deref().unwrap_or("Bearer {token}");
    if template == "<absent>" {
        return None;
    }
    let mut value = template
        .replace("<empty>", "")
        .replace("{space}", " ")
        .replace("{token}", "{h}.{p}.{s}")
        .replace("{p=}", &URL_SAFE.encode(&claims))
        .replace("{h}", &h)
        .replace("{p}", &p)
        .replace("{s}", &s);
    while let Some(start) = value.find("{pad:") {
        let end = start + value[start..].find('}').unwrap();
        let n: usize = value[start + 5..end].parse().unwrap();
        value.replace_range(start..=end, &"A".repeat(n));
    }
    Some(value)
}

#[test]
fn token_cases() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokens.cases"),
    )
    .unwrap();
    let cases = parse_cases(&text);
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    let mut out = String::new();
    let mut rejected = 0;
    for case in &cases {
        let auth = authenticator(case.auth.as_deref().unwrap_or("default"));
        let value = authorization(case);
        let outcome = match auth.authenticate(value.as_deref(), NOW) {
            Ok(id) => format!(
                "ok username={:?} issuer={:?} roles={:?} groups={:?}{}",
                id.username,
                id.issuer,
                id.roles,
                id.groups,
                if id.guest { " guest" } else { "" }
            ),
            Err(e) => {
                rejected += 1;
                format!("{:?} {} {:?}", e.kind, e.reason, e.message)
            }
        };
        writeln!(out, "{}\n  => {outcome}", case.name).unwrap();
    }
    assert!(rejected >= 20, "only {rejected} rejected cases");
    expect_file!["data/tokens.golden"].assert_eq(&out);
}
