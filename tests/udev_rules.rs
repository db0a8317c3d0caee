//! The shipped udev rules: every key is a udev key with an operator udev accepts for it,
//! and every program they run is installed by the package, with flags it takes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/yocto/meta-edgerec/recipes-multimedia/edgerec/files/90-edgerec.rules"
);

/// udev(7) keys: (name, takes `{attribute}`, may be matched, may be assigned).
const KEYS: &[(&str, bool, bool, bool)] = &[
    ("ACTION", false, true, false),
    ("DEVPATH", false, true, false),
    ("KERNEL", false, true, false),
    ("KERNELS", false, true, false),
    ("NAME", false, true, true),
    ("SYMLINK", false, true, true),
    ("SUBSYSTEM", false, true, false),
    ("SUBSYSTEMS", false, true, false),
    ("DRIVER", false, true, false),
    ("DRIVERS", false, true, false),
    ("ATTR", true, true, true),
    ("ATTRS", true, true, false),
    ("SYSCTL", true, true, true),
    ("ENV", true, true, true),
    ("CONST", true, true, false),
    ("TAG", false, true, true),
    ("TAGS", false, true, false),
    ("TEST", true, true, false),
    ("PROGRAM", false, true, false),
    ("RESULT", false, true, false),
    ("OWNER", false, false, true),
    ("GROUP", false, false, true),
    ("MODE", false, false, true),
    ("SECLABEL", true, false, true),
    ("OPTIONS", false, false, true),
    ("IMPORT", true, false, true),
    ("RUN", true, false, true),
    ("LABEL", false, false, true),
    ("GOTO", false, false, true),
];

#[derive(Debug)]
struct Token {
    key: String,
    attr: Option<String>,
    op: String,
    value: String,
}

/// The rules, continuation lines joined, comments and blank lines dropped.
fn rules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => cur.push_str(head),
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    assert!(cur.is_empty(), "rules end in a continuation");
    out
}

/// One rule's `KEY{attr}OP"value"` tokens (udev's own grammar: values always quoted).
fn tokens(rule: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = rule.trim();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or_else(|| panic!("no operator in {rest:?}"));
        let key = rest[..key_end].to_string();
        rest = &rest[key_end..];
        let mut attr = None;
        if let Some(r) = rest.strip_prefix('{') {
            let close = r
                .find('}')
                .unwrap_or_else(|| panic!("unclosed {{ in {rule:?}"));
            attr = Some(r[..close].to_string());
            rest = &r[close + 1..];
        }
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .unwrap_or_else(|| panic!("bad operator after {key} in {rule:?}"));
        rest = rest[op.len()..]
            .strip_prefix('"')
            .unwrap_or_else(|| panic!("unquoted value of {key}"));
        let close = rest
            .find('"')
            .unwrap_or_else(|| panic!("unclosed value of {key}"));
        let value = rest[..close].to_string();
        rest = rest[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        out.push(Token {
            key,
            attr,
            op: op.to_string(),
            value,
        });
    }
    out
}

/// Where the Debian package installs each asset (the Yocto recipe installs the same).
fn package_paths() -> BTreeSet<String> {
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap(),
    )
    .unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    assets
        .iter()
        .map(|a| {
            let src = a[0].as_str().unwrap();
            let dest = a[1].as_str().unwrap();
            let name = Path::new(src).file_name().unwrap().to_str().unwrap();
            if dest.ends_with('/') {
                format!("/{dest}{name}")
            } else {
                format!("/{dest}")
            }
        })
        .collect()
}

#[test]
fn every_key_is_a_udev_key_and_every_program_is_packaged() {
    let text = std::fs::read_to_string(RULES).unwrap();
    let rules = rules(&text);
    assert_eq!(rules.len(), 4, "{rules:#?}");
    let installed = package_paths();
    let recipe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/yocto/meta-edgerec/recipes-multimedia/edgerec/edgerec_0.1.0.bb"
    ))
    .unwrap();
    assert!(
        recipe.contains("udev/rules.d/90-edgerec.rules")
            || recipe.contains("90-edgerec.rules ${D}")
    );
    let mut programs = 0;
    for rule in &rules {
        let toks = tokens(rule);
        assert!(
            toks.iter().any(|t| t.op == "=="),
            "a rule without a match: {rule}"
        );
        for t in &toks {
            let &(_, takes_attr, matchable, assignable) = KEYS
                .iter()
                .find(|k| k.0 == t.key)
                .unwrap_or_else(|| panic!("{} is not a udev key ({rule})", t.key));
            let is_match = t.op == "==" || t.op == "!=";
            assert!(
                if is_match { matchable } else { assignable },
                "{} {} ({rule})",
                t.key,
                t.op
            );
            match (&t.key[..], &t.attr) {
                ("RUN", Some(a)) => assert!(a == "program" || a == "builtin", "RUN{{{a}}}"),
                ("IMPORT", Some(a)) => {
                    assert!(
                        ["program", "builtin", "file", "db", "cmdline", "parent"]
                            .contains(&a.as_str())
                    )
                }
                (_, Some(_)) => assert!(takes_attr, "{} takes no {{}}", t.key),
                (_, None) => assert!(!takes_attr || t.key == "RUN", "{} needs {{}}", t.key),
            }
            if t.key == "GROUP" {
                assert_eq!(t.value, "audio");
            }
            if t.key == "IMPORT" && t.attr.as_deref() == Some("builtin") {
                assert_eq!(t.value, "path_id");
            }
            if t.key == "RUN" || t.key == "PROGRAM" {
                programs += 1;
                check_program(&t.value, &installed);
            }
        }
    }
    assert_eq!(programs, 1);
}

/// The program is one the package installs, and it takes the subcommand and flags used.
fn check_program(command: &str, installed: &BTreeSet<String>) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let program = words[0];
    assert!(
        program.starts_with('/'),
        "{program}: udev needs an absolute path"
    );
    assert!(
        installed.contains(program),
        "{program} is not in the package: {installed:?}"
    );
    assert_eq!(program, "/usr/bin/edgerec");
    let sub = words[1];
    let help = Command::new(env!("CARGO_BIN_EXE_edgerec"))
        .args([sub, "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "edgerec {sub} --help failed");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "edgerec {sub} takes no {flag}");
    }
}

#[test]
fn the_parser_rejects_what_udev_would() {
    let bad = ["SUBSYSTEM==sound", "FOO==\"x\"", "KERNEL=\"x\""];
    for rule in bad {
        let r = std::panic::catch_unwind(|| {
            for t in tokens(rule) {
                let k = KEYS.iter().find(|k| k.0 == t.key).expect("unknown key");
                let is_match = t.op == "==" || t.op == "!=";
                assert!(if is_match { k.2 } else { k.3 }, "wrong operator");
            }
        });
        assert!(r.is_err(), "{rule} passed");
    }
}
