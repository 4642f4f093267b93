//! Fuzz support (feature `fuzz`): [`Input`], the byte reader every custos fuzz target draws its
//! structured values from, and the model's own target, [`rule_matching`].
//!
//! A target takes arbitrary bytes, panics when a property fails and returns a small number
//! naming the path the input took (the `custos-fuzz` engine keeps inputs that reach new paths).
//! The engine, the short passes `cargo test` runs and `scripts/fuzz.sh` live in `crates/fuzz`.

use crate::role::{pattern_matches, MethodName, Role, Rule};

/// Structured values drawn from fuzz bytes. Reading past the end yields zeros, so every input
/// decodes to some value and short inputs stay meaningful.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.byte()))
    }

    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let raw = if n <= 256 {
            usize::from(self.byte())
        } else {
            self.u64() as usize
        };
        raw % n
    }

    pub fn choose<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }

    /// Up to `max` bytes, the length read first.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max + 1);
        let start = self.pos.min(self.data.len());
        let end = (start + len).min(self.data.len());
        self.pos = start + len;
        &self.data[start..end]
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// Pieces patterns and names are made of: known service and api names, their parts, globs,
/// denies and whitespace, so matches and near misses are frequent.
const FRAGMENTS: &[&str] = &[
    "*",
    "*",
    "!",
    " ",
    "volume",
    "vol",
    "ume",
    "role",
    "create",
    "cre",
    "ate",
    "inspect",
    "enumerate",
    "num",
    "identity",
    "x",
    "",
    "\t",
    "é",
];

fn text(u: &mut Input<'_>, max_parts: usize) -> String {
    (0..u.below(max_parts + 1))
        .map(|_| *u.choose(FRAGMENTS))
        .collect()
}

fn patterns(u: &mut Input<'_>) -> Vec<String> {
    (0..u.below(4)).map(|_| text(u, 4)).collect()
}

/// Upstream's pattern semantics, stated directly: a pattern with a `*` at either end loses every
/// `*`, is trimmed, and matches by containment (both ends), suffix (leading) or prefix
/// (trailing); an empty remainder matches everything; other patterns must equal the name; an
/// empty pattern matches nothing.
pub fn reference_pattern(pattern: &str, name: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let (leading, trailing) = (pattern.starts_with('*'), pattern.ends_with('*'));
    if !leading && !trailing {
        return pattern == name;
    }
    let core = pattern.replace('*', "");
    let core = core.trim();
    if core.is_empty() {
        return true;
    }
    match (leading, trailing) {
        (true, true) => name.contains(core),
        (true, false) => name.ends_with(core),
        _ => name.starts_with(core),
    }
}

/// Upstream's role decision, stated directly: a pattern starting with `!` denies (every `!`
/// removed, trimmed); a service deny anywhere refuses; an api deny refuses under the rules whose
/// services allow; otherwise some rule must allow both service and api.
pub fn reference_allows(role: &Role, method: &MethodName) -> bool {
    let denies = |p: &str, name: &str| {
        p.starts_with('!') && reference_pattern(p.replace('!', "").trim(), name)
    };
    let allows = |p: &str, name: &str| !p.starts_with('!') && reference_pattern(p, name);
    let (service, api) = (method.service.as_str(), method.api.as_str());
    if role
        .rules
        .iter()
        .flat_map(|r| &r.services)
        .any(|s| denies(s, service))
    {
        return false;
    }
    let serving = |r: &&Rule| r.services.iter().any(|s| allows(s, service));
    if role
        .rules
        .iter()
        .filter(serving)
        .any(|r| r.apis.iter().any(|a| denies(a, api)))
    {
        return false;
    }
    role.rules
        .iter()
        .filter(serving)
        .any(|r| r.apis.iter().any(|a| allows(a, api)))
}

/// Rule matching: [`pattern_matches`] and [`Role::allows`] agree with the references above; a
/// rule without `!` never takes access away, a rule of only `!` patterns never grants any;
/// [`MethodName::from_full`] takes any path.
pub fn rule_matching(data: &[u8]) -> u64 {
    let mut u = Input::new(data);
    let mut path = 0u64;
    for _ in 0..4 {
        let (p, name) = (text(&mut u, 4), text(&mut u, 3));
        let got = pattern_matches(&p, &name);
        assert_eq!(
            got,
            reference_pattern(&p, &name),
            "pattern {p:?} on {name:?}"
        );
        path = path << 1 | u64::from(got);
    }
    let role = Role {
        name: "fuzz".into(),
        rules: (0..u.below(4))
            .map(|_| Rule {
                services: patterns(&mut u),
                apis: patterns(&mut u),
            })
            .collect(),
    };
    let method = MethodName {
        full: String::new(),
        service: text(&mut u, 3),
        api: text(&mut u, 3),
    };
    let allowed = role.allows(&method);
    assert_eq!(
        allowed,
        reference_allows(&role, &method),
        "{role:?} on {method:?}"
    );
    // Monotonicity.
    let mut extra = Rule {
        services: patterns(&mut u),
        apis: patterns(&mut u),
    };
    let mut more = role.clone();
    for p in extra.services.iter_mut().chain(extra.apis.iter_mut()) {
        *p = p.replace('!', "");
    }
    more.rules.push(extra.clone());
    if allowed {
        assert!(
            more.allows(&method),
            "an allow-only rule took access away: {more:?} on {method:?}"
        );
    }
    let mut fewer = role.clone();
    for p in extra.services.iter_mut().chain(extra.apis.iter_mut()) {
        p.insert(0, '!');
    }
    fewer.rules.push(extra);
    if !allowed {
        assert!(
            !fewer.allows(&method),
            "a deny-only rule granted access: {fewer:?} on {method:?}"
        );
    }
    // Any path parses; the names are lower case and the full path is kept.
    let full = String::from_utf8_lossy(u.rest()).into_owned();
    let m = MethodName::from_full(&full);
    assert_eq!(m.full, full);
    assert_eq!(m.service, m.service.to_lowercase(), "{full:?}");
    assert_eq!(m.api, m.api.to_lowercase(), "{full:?}");
    path << 1 | u64::from(allowed)
}

/// Inputs to start from.
pub fn rule_matching_seeds() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        (0u8..=255).collect(),
        vec![1; 64],
        vec![0x55; 96],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_agree_on_the_builtin_roles() {
        for role in crate::role::builtin_roles() {
            for full in [
                "/openstorage.api.OpenStorageVolume/Create",
                "/openstorage.api.OpenStorageVolume/Enumerate",
                "/openstorage.api.OpenStorageIdentity/Version",
                "/custos.admin.v1.Audit/List",
            ] {
                let m = MethodName::from_full(full);
                assert_eq!(
                    role.allows(&m),
                    reference_allows(&role, &m),
                    "{} {full}",
                    role.name
                );
            }
        }
    }

    #[test]
    fn input_reads_past_the_end_as_zeros() {
        let mut u = Input::new(&[7]);
        assert_eq!(u.byte(), 7);
        assert_eq!(u.byte(), 0);
        assert_eq!(u.bytes(10), &[] as &[u8]);
        assert_eq!(u.u64(), 0);
    }
}
