//! `--config uwire.toml`: one TOML file for `uwire proxy` and `uwire serve`.
//!
//! ```toml
//! [proxy]
//! listen = "0.0.0.0:443"
//! upstream = ["unix:/run/app.sock"]
//! tls-cert = "/etc/uwire/cert.pem"
//! tls-key = "/etc/uwire/key.pem"
//! static = ["/static=/srv/app/static"]
//! header-read-timeout = "20s"
//!
//! [serve]
//! bind = "unix:/run/app.sock"
//! max-body-size = 10485760
//! ```
//!
//! The keys of a subcommand's table are its long option names, taken from
//! the clap definition itself, so every option has a key by construction
//! and a new option needs no entry here. A file value becomes the option's
//! argument (`key = true` for a switch, an array for a repeatable option)
//! and is checked by the option's own parser, so an error names the file,
//! the line and the key. Options given on the command line win over the
//! file (for a repeatable option, the command line's list replaces the
//! file's).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};
use toml::de::{DeTable, DeValue};

/// The subcommands whose options a file may set (its table names).
const SECTIONS: [&str; 2] = ["proxy", "serve"];
/// Options that make no sense in a file.
const NOT_IN_FILE: [&str; 4] = ["config", "check-config", "help", "version"];

/// Returns `argv` with the options of the `--config` file (if any) of its
/// subcommand inserted before the command-line options.
pub fn apply(argv: Vec<OsString>, root: &Command) -> Result<Vec<OsString>, String> {
    let Some(section) = argv.get(1).and_then(|s| s.to_str()) else {
        return Ok(argv);
    };
    if !SECTIONS.contains(&section) {
        return Ok(argv);
    }
    let Some(sub) = root.find_subcommand(section) else {
        return Ok(argv);
    };
    let mut sub = sub.clone().no_binary_name(true);
    sub.build();
    let given = &argv[2..];
    // Lenient: options required from the file may be missing here.
    let Ok(lenient) = sub.clone().ignore_errors(true).try_get_matches_from(given) else {
        // --help, --version: the real parse answers them.
        return Ok(argv);
    };
    let Some(path) = lenient.get_one::<PathBuf>("config").cloned() else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    let on_cli =
        |a: &Arg| lenient.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine);
    let mut out = vec![argv[0].clone(), argv[1].clone()];
    out.extend(file_args(&sub, section, &path, &text, on_cli)?);
    out.extend(given.iter().cloned());
    Ok(out)
}

/// The command-line arguments the `[section]` table of `text` stands for.
pub fn file_args(
    cmd: &Command,
    section: &str,
    path: &Path,
    text: &str,
    on_cli: impl Fn(&Arg) -> bool,
) -> Result<Vec<OsString>, String> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let at = |offset: usize| format!("{}:{}", path.display(), line(offset));
    let doc = DeTable::parse(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in doc.get_ref().iter() {
        let name = key.get_ref().as_ref();
        if !SECTIONS.contains(&name) {
            return Err(format!(
                "{}: unknown table [{name}]: use [proxy] or [serve]",
                at(key.span().start)
            ));
        }
        if name != section {
            continue;
        }
        let DeValue::Table(table) = value.get_ref() else {
            return Err(format!("{}: {name} must be a table", at(key.span().start)));
        };
        for (k, v) in table.iter() {
            let name = k.get_ref().as_ref();
            let where_ = at(k.span().start);
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(name) && !NOT_IN_FILE.contains(&name))
                .ok_or_else(|| {
                    format!(
                        "{where_}: [{section}] unknown key `{name}` (keys are the long options of `uwire {section}`: {})",
                        known_keys(cmd).join(", ")
                    )
                })?;
            if on_cli(arg) {
                continue;
            }
            let values = scalars(v.get_ref())
                .map_err(|what| format!("{where_}: [{section}] key `{name}`: {what}"))?;
            match arg.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => {
                    let [DeValue::Boolean(b)] = values.as_slice() else {
                        return Err(format!(
                            "{where_}: [{section}] key `{name}`: expected true or false"
                        ));
                    };
                    if *b == matches!(arg.get_action(), ArgAction::SetTrue) {
                        out.push(OsString::from(format!("--{name}")));
                    }
                }
                action => {
                    if values.len() != 1 && !matches!(action, ArgAction::Append) {
                        return Err(format!(
                            "{where_}: [{section}] key `{name}`: takes one value, not a list"
                        ));
                    }
                    for v in values {
                        let s = scalar_text(v).map_err(|what| {
                            format!("{where_}: [{section}] key `{name}`: {what}")
                        })?;
                        check_value(arg, &s).map_err(|what| {
                            format!("{where_}: [{section}] key `{name}`: {what}")
                        })?;
                        out.push(OsString::from(format!("--{name}={s}")));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn known_keys(cmd: &Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_IN_FILE.contains(l))
        .map(str::to_string)
        .collect()
}

/// A value, or each element of an array of values.
fn scalars<'a>(v: &'a DeValue<'a>) -> Result<Vec<&'a DeValue<'a>>, String> {
    match v {
        DeValue::Array(items) => items
            .iter()
            .map(|i| match i.get_ref() {
                DeValue::Array(_) | DeValue::Table(_) => {
                    Err("nested arrays and tables are not options".to_string())
                }
                other => Ok(other),
            })
            .collect(),
        DeValue::Table(_) => Err("a table is not an option value".into()),
        other => Ok(vec![other]),
    }
}

fn scalar_text(v: &DeValue<'_>) -> Result<String, String> {
    Ok(match v {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|_| format!("integer {i} out of range"))?,
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(_) => return Err("a date is not an option value".into()),
        DeValue::Array(_) | DeValue::Table(_) => {
            return Err("nested arrays and tables are not options".into())
        }
    })
}

/// Runs the option's own value parser on `value` (clap keeps its parse
/// call private, so through a one-option command).
fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    let probe = Command::new("uwire").no_binary_name(true).arg(
        Arg::new("value")
            .value_name("VALUE")
            .action(ArgAction::Set)
            .allow_hyphen_values(true)
            .value_parser(arg.get_value_parser().clone()),
    );
    probe
        .try_get_matches_from([value])
        .map(|_| ())
        .map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("").trim();
            first
                .strip_prefix("error: ")
                .unwrap_or(first)
                .replace(" for '[VALUE]'", "")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn proxy_cmd() -> Command {
        let root = crate::Cli::command();
        let mut c = root
            .find_subcommand("proxy")
            .unwrap()
            .clone()
            .no_binary_name(true);
        c.build();
        c
    }

    fn args(text: &str) -> Result<Vec<String>, String> {
        file_args(&proxy_cmd(), "proxy", Path::new("u.toml"), text, |_| false)
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn every_flag_is_a_key() {
        let cmd = proxy_cmd();
        let keys = known_keys(&cmd);
        for want in [
            "listen",
            "upstream",
            "tls-cert",
            "static",
            "max-body-size",
            "proxy-protocol",
        ] {
            assert!(
                keys.iter().any(|k| k == want),
                "{want} missing from {keys:?}"
            );
        }
    }

    #[test]
    fn values_become_options() {
        let mut a = args(
            "[proxy]\nlisten = \"0.0.0.0:8443\"\nupstream = [\"unix:/a.sock\", \"unix:/b.sock\"]\n\
             proxy-protocol = true\nno-x-forwarded-for = false\nmax-body-size = 1_024\n\
             [serve]\nbind = \"unix:/x\"\n",
        )
        .unwrap();
        // Keys come in table order (sorted); a list keeps its own order.
        a.sort();
        assert_eq!(
            a,
            [
                "--listen=0.0.0.0:8443",
                "--max-body-size=1024",
                "--proxy-protocol",
                "--upstream=unix:/a.sock",
                "--upstream=unix:/b.sock",
            ]
        );
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = args("[proxy]\n\nmax-body-size = \"lots\"\n").unwrap_err();
        assert!(
            e.starts_with("u.toml:3: [proxy] key `max-body-size`:"),
            "{e}"
        );
        let e = args("[proxy]\nlisten = \"x\"\nbogus = 1\n").unwrap_err();
        assert!(
            e.starts_with("u.toml:3: [proxy] unknown key `bogus`"),
            "{e}"
        );
        let e = args("[proxy]\nlisten = [\"a\", \"b\"]\n").unwrap_err();
        assert!(e.contains("takes one value"), "{e}");
        let e = args("[nginx]\nx = 1\n").unwrap_err();
        assert!(e.starts_with("u.toml:1: unknown table [nginx]"), "{e}");
        let e = args("[proxy]\nlisten = \n").unwrap_err();
        assert!(e.contains("u.toml") && e.contains("line 2"), "{e}");
        let e = args("[proxy]\nproxy-protocol = \"yes\"\n").unwrap_err();
        assert!(e.contains("expected true or false"), "{e}");
    }
}
