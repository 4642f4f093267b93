//! `custos-fuzz`: runs the fuzz targets with the mutational engine for a time or a number of
//! inputs, keeps inputs that reached new paths in a corpus directory, and writes a panicking
//! input to the crash directory (exit code 1). `scripts/fuzz.sh` drives it.
//!
//! ```text
//! custos-fuzz [--target NAME]... [--seconds N | --execs N] [--seed N]
//!             [--corpus DIR] [--crashes DIR]
//! custos-fuzz --replay FILE --target NAME
//! custos-fuzz --write-seeds DIR          # DIR/<target>/<hash>: each target's seed inputs
//! ```
//!
//! Before each input runs it is written to `CRASHES/<target>.in-flight`, so an input that aborts
//! the process (rather than panicking) can be found there afterwards.

use anyhow::{bail, Context};
use custos_fuzz::{fuzz, input_name, run_one, target, targets, Budget, Target};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// At most this many corpus files are kept per target.
const MAX_CORPUS_FILES: usize = 1000;

struct Args {
    targets: Vec<Target>,
    budget: Budget,
    seed: u64,
    corpus: Option<PathBuf>,
    crashes: Option<PathBuf>,
    replay: Option<PathBuf>,
    write_seeds: Option<PathBuf>,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = Args {
        targets: Vec::new(),
        budget: Budget::Time(Duration::from_secs(60)),
        seed: 1,
        corpus: None,
        crashes: None,
        replay: None,
        write_seeds: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => {
                let name = value()?;
                let names: Vec<&str> = targets().iter().map(|t| t.name).collect();
                args.targets.push(target(&name).with_context(|| {
                    format!("no target {name:?}; targets: {}", names.join(", "))
                })?);
            }
            "--seconds" => {
                args.budget =
                    Budget::Time(Duration::from_secs(value()?.parse().context("--seconds")?))
            }
            "--execs" => args.budget = Budget::Execs(value()?.parse().context("--execs")?),
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "--corpus" => args.corpus = Some(value()?.into()),
            "--crashes" => args.crashes = Some(value()?.into()),
            "--replay" => args.replay = Some(value()?.into()),
            "--write-seeds" => args.write_seeds = Some(value()?.into()),
            "-h" | "--help" => {
                println!("usage: custos-fuzz [--target NAME]... [--seconds N | --execs N] [--seed N] [--corpus DIR] [--crashes DIR]\n       custos-fuzz --replay FILE --target NAME\n       custos-fuzz [--target NAME]... --write-seeds DIR\ntargets: {}", targets().iter().map(|t| t.name).collect::<Vec<_>>().join(", "));
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if args.targets.is_empty() {
        args.targets = targets();
    }
    Ok(args)
}

fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn main() -> anyhow::Result<()> {
    let args = parse()?;
    if let Some(dir) = &args.write_seeds {
        for t in &args.targets {
            let dir = dir.join(t.name);
            std::fs::create_dir_all(&dir)?;
            for seed in (t.seeds)() {
                std::fs::write(dir.join(input_name(&seed)), &seed)?;
            }
        }
        return Ok(());
    }
    if let Some(file) = &args.replay {
        let [t] = args.targets.as_slice() else {
            bail!("--replay needs exactly one --target");
        };
        let input = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        return match run_one(t, &input) {
            Ok(path) => {
                println!("{}: no failure (path {path})", t.name);
                Ok(())
            }
            Err(message) => {
                eprintln!("{}: FAILED: {message}", t.name);
                std::process::exit(1);
            }
        };
    }
    // Panics are reported by the engine, with their input: keep stderr quiet meanwhile.
    std::panic::set_hook(Box::new(|_| {}));
    let budget = match args.budget {
        Budget::Time(d) => Budget::Time(d / args.targets.len() as u32),
        execs => execs,
    };
    let mut failed = false;
    for t in &args.targets {
        let corpus_dir = args.corpus.as_ref().map(|d| d.join(t.name));
        let corpus = corpus_dir.as_deref().map(read_corpus).unwrap_or_default();
        let in_flight = match &args.crashes {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                Some(std::fs::File::create(
                    dir.join(format!("{}.in-flight", t.name)),
                )?)
            }
            None => None,
        };
        let report = fuzz(t, args.seed, &corpus, budget, |input| {
            if let Some(f) = &in_flight {
                // Best effort: a failed write only loses the record of an abort.
                let _ = f.set_len(0).and_then(|()| f.write_all_at(input, 0));
            }
        });
        if let Some(dir) = &corpus_dir {
            std::fs::create_dir_all(dir)?;
            let room = MAX_CORPUS_FILES.saturating_sub(corpus.len());
            for input in report.new_inputs.iter().take(room) {
                std::fs::write(dir.join(input_name(input)), input)?;
            }
        }
        println!(
            "{}: {} inputs, {} paths, {} new corpus inputs{}",
            t.name,
            report.execs,
            report.paths,
            report.new_inputs.len(),
            if report.crash.is_some() {
                ", FAILED"
            } else {
                ""
            }
        );
        if let Some(crash) = report.crash {
            failed = true;
            eprintln!("{}: property failed: {}", t.name, crash.message);
            match &args.crashes {
                Some(dir) => {
                    let file = dir.join(format!("{}-{}", t.name, input_name(&crash.input)));
                    std::fs::write(&file, &crash.input)?;
                    eprintln!(
                        "  input written to {} (replay: custos-fuzz --replay {} --target {})",
                        file.display(),
                        file.display(),
                        t.name
                    );
                }
                None => eprintln!("  input: {:?}", crash.input),
            }
        }
        if let Some(dir) = &args.crashes {
            let _ = std::fs::remove_file(dir.join(format!("{}.in-flight", t.name)));
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
