//! `edu-tests`: the in-VM test runner of the edu-dma driver.
//!
//! Runs as root with the module loaded and two edu devices present. Output, one line each:
//! `ok <name>`, `not ok <name> - <reason>`, `# <diagnostic>`; last `# <P> passed, <F> failed`.
//! Exit status 0 iff no test failed.
//!
//! Usage: `edu-tests [--filter SUBSTR] [--list] [--group NAME|all]...` with the groups core, buf,
//! timeouts, user, dmabuf, queue, unbind, stress, unplug, failnth, onward. `all`, the default, is
//! every group but the opt-in ones (`unbind`, `stress`, `unplug`, `failnth`, `onward`), which must
//! be asked for by name. `unplug` needs a host that hot-unplugs edu-dma<k> when the guest prints
//! `EDU-UNPLUG-NOW <k>` (`scripts/vm --hotplug 2`, three devices) and the disks of `--disk`;
//! `failnth` a kernel with fault injection (the debug
//! kernel); `onward` the two disks of `scripts/vm --disk`, the ext4 one mounted at /mnt (the job's
//! `disk_mount`).

// One module (file or folder) per group; what several groups share is in `harness`.
mod buf;
mod core;
mod dmabuf;
mod failnth;
mod harness;
mod import;
mod onward;
mod queue;
mod stress;
mod timeouts;
mod unbind;
mod unplug;
mod user;

use std::any::Any;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use harness::Test;

/// A group: its name and its tests.
type Group = (&'static str, fn() -> Vec<Test>);

/// Groups in run order.
const GROUPS: &[Group] = &[
    ("core", core::tests),
    ("buf", buf::tests),
    ("timeouts", timeouts::tests),
    ("user", user::tests),
    ("dmabuf", dmabuf::tests),
    ("queue", queue::tests),
    ("unbind", unbind::tests),
    ("stress", stress::tests),
    ("unplug", unplug::tests),
    ("failnth", failnth::tests),
    ("onward", onward::tests),
];

/// Groups that run only when named: they unbind devices, need a host-side hot unplug or the
/// disks of `scripts/vm --disk`, or run for minutes.
const OPT_IN: &[&str] = &["unbind", "stress", "unplug", "failnth", "onward"];

struct Args {
    filter: Option<String>,
    list: bool,
    groups: Vec<String>,
}

fn usage() -> String {
    "usage: edu-tests [--filter SUBSTR] [--list] \
     [--group core|buf|timeouts|user|dmabuf|queue|unbind|stress|unplug|failnth|onward|all]...\n\
     --group may be repeated; default all (every group but unbind, stress, unplug, failnth and \
     onward)"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        filter: None,
        list: false,
        groups: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match key.as_str() {
            "--filter" => args.filter = Some(value("--filter")?),
            "--group" => {
                let g = value("--group")?;
                if g != "all" && !GROUPS.iter().any(|(n, _)| *n == g) {
                    return Err(format!("unknown group {g:?}\n{}", usage()));
                }
                args.groups.push(g);
            }
            "--list" => args.list = true,
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}\n{}", usage())),
        }
    }
    if args.groups.is_empty() {
        args.groups.push("all".to_string());
    }
    Ok(args)
}

fn selected(args: &Args) -> Vec<Test> {
    let mut out = Vec::new();
    for (group, make) in GROUPS {
        let wanted = args
            .groups
            .iter()
            .any(|g| g == group || (g == "all" && !OPT_IN.contains(group)));
        if !wanted {
            continue;
        }
        for mut t in make() {
            t.name = format!("{group}.{}", t.name);
            if args
                .filter
                .as_ref()
                .is_none_or(|f| t.name.contains(f.as_str()))
            {
                out.push(t);
            }
        }
    }
    out
}

/// Where the panic hook leaves the location of the last panic.
static PANIC_AT: Mutex<Option<String>> = Mutex::new(None);

fn panic_reason(payload: &(dyn Any + Send)) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    };
    let at = PANIC_AT.lock().map(|mut g| g.take()).unwrap_or(None);
    match at {
        Some(at) => format!("panicked at {at}: {msg}"),
        None => format!("panicked: {msg}"),
    }
}

/// Runs one test; a panic fails it (and only it).
fn run_one(t: &Test) -> harness::TestResult {
    panic::catch_unwind(AssertUnwindSafe(|| (t.f)()))
        .unwrap_or_else(|p| Err(panic_reason(p.as_ref())))
}

fn one_line(s: &str) -> String {
    s.trim().replace('\n', " | ")
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("edu-tests: {e}");
            return ExitCode::from(2);
        }
    };
    let tests = selected(&args);
    if args.list {
        for t in &tests {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "?".to_string());
        if let Ok(mut g) = PANIC_AT.lock() {
            *g = Some(at);
        }
    }));
    println!("# edu-tests: {} test(s)", tests.len());
    let (mut passed, mut failed) = (0u32, 0u32);
    for t in &tests {
        let start = Instant::now();
        let r = run_one(t);
        let secs = start.elapsed().as_secs_f64();
        if secs >= 2.0 {
            println!("# {} took {secs:.1} s", t.name);
        }
        match r {
            Ok(()) => {
                passed += 1;
                println!("ok {}", t.name);
            }
            Err(reason) => {
                failed += 1;
                println!("not ok {} - {}", t.name, one_line(&reason));
            }
        }
        let _ = std::io::stdout().flush();
    }
    println!("# {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(groups: &[&str], filter: Option<&str>) -> Vec<String> {
        let args = Args {
            filter: filter.map(str::to_string),
            list: true,
            groups: groups.iter().map(|s| s.to_string()).collect(),
        };
        selected(&args).into_iter().map(|t| t.name).collect()
    }

    #[test]
    fn selection() {
        let all = names(&["all"], None);
        assert!(all.iter().all(|n| !n.starts_with("unbind.")));
        assert_eq!(all.first().map(String::as_str), Some("core.nodes"));
        let order: Vec<&str> = all.iter().map(|n| n.split('.').next().unwrap()).collect();
        let mut dedup = order.clone();
        dedup.dedup();
        assert_eq!(
            dedup,
            ["core", "buf", "timeouts", "user", "dmabuf", "queue"]
        );
        let unbind = names(&["unbind"], None);
        assert_eq!(
            unbind,
            [
                "unbind.unbind_rebind",
                "unbind.inflight",
                "unbind.dmabuf_export",
                "unbind.dmabuf_import_importer",
                "unbind.dmabuf_import_exporter",
                "unbind.queue",
                "unbind.uring",
                "unbind.rmmod_busy"
            ]
        );
        let both = names(&["all", "unbind"], None);
        assert_eq!(both.last().map(String::as_str), Some("unbind.rmmod_busy"));
        assert!(all
            .iter()
            .all(|n| !n.starts_with("stress.") && !n.starts_with("unplug.")));
        assert_eq!(
            names(&["stress"], None),
            [
                "stress.kill9",
                "stress.load",
                "stress.fuzz",
                "stress.fuzz_overlapping_dest",
                "stress.mem_pressure"
            ]
        );
        assert_eq!(
            names(&["unplug"], None),
            ["unplug.inflight", "unplug.onward_inflight"]
        );
        assert_eq!(
            names(&["failnth"], None),
            ["failnth.sweep", "failnth.probe"]
        );
        assert!(all.iter().all(|n| !n.starts_with("failnth.")));
        assert!(all.iter().all(|n| !n.starts_with("onward.")));
        let onward = names(&["onward"], None);
        assert!(onward.contains(&"onward.streaming.odirect_file".to_string()));
        assert!(onward.contains(&"onward.coherent.uring".to_string()));
        assert!(all.contains(&"user.copy_16mib".to_string()));
        assert_eq!(
            names(&["buf"], Some("streaming.round_trip")),
            ["buf.streaming.round_trip"]
        );
        let mut uniq = both.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), both.len(), "test names are unique");
    }

    #[test]
    fn a_panic_fails_only_its_test() {
        let t = harness::test("boom", || panic!("boom {}", 42));
        let r = run_one(&t);
        assert!(r.as_ref().is_err_and(|e| e.contains("boom 42")), "{r:?}");
        let t = harness::test("fine", || Ok(()));
        assert_eq!(run_one(&t), Ok(()));
        assert_eq!(one_line("a\nb\n"), "a | b");
    }
}
