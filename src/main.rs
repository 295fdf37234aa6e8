//! The `triage` command line. Thin: parsing arguments, reading files, printing; the work is in
//! the library.

use std::io::{self, BufRead, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use triage::catalog::Catalog;
use triage::classify::Classifier;
use triage::decision::Decision;
use triage::eval;
use triage::ticket::Ticket;

/// Find known symptoms in help-desk tickets, tag them, and suggest a first reply.
///
/// triage reads tickets (JSON Lines: one {"id", "subject", "body"} object per line), finds the
/// symptoms of a catalogue in each (patterns/*.toml; the passkey catalogue is built in), and
/// writes a decision per ticket: symptoms with scores and evidence, tags, and a suggested reply.
///
/// Catalogue: --patterns DIR, else ./patterns if it exists, else the built-in one.
#[derive(Parser)]
#[command(
    name = "triage",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify tickets and print one decision per ticket.
    ///
    /// Input is JSON Lines (`id`, `subject`, `body`; other keys are ignored), from FILE or
    /// standard input. Output is one JSON line per ticket, in input order. A bad line is
    /// reported on stderr with its line number and skipped; the exit status is 1 if any was.
    ///
    /// Examples:
    ///   triage classify samples/tickets.jsonl
    ///   triage classify --format human samples/tickets.jsonl
    ///   echo "my YubiKey PIN is blocked" | triage classify --text
    #[command(verbatim_doc_comment)]
    Classify(ClassifyArgs),
    /// Validate catalogues: print every problem as path:line: message, exit 1 if any.
    ///
    /// DIR defaults to ./patterns (or the built-in catalogue when there is none). Files may be
    /// named directly too.
    Check(CheckArgs),
    /// Measure a catalogue on labelled tickets (JSON Lines with `labels: [symptom ids]`).
    ///
    /// Prints per-symptom precision, recall and F1, micro and macro F1, the false-positive rate
    /// on tickets labelled [], which symptoms were found on tickets labelled with another
    /// (confusion), the off-topic false positives grouped by the symptom found, and the
    /// misclassified tickets with their evidence. With --min-macro-f1 / --max-fp-rate it is a
    /// gate: exit 1 when the catalogue falls short.
    Eval(EvalArgs),
    /// Run the worker: read tickets, classify each, hand the decisions to the sinks.
    ///
    /// With a config that has a [kafka] section, triage joins the consumer group, reads the
    /// input topic, and writes each decision to the decisions topic (and any other sink) before
    /// it lets Kafka commit the ticket's offset: at least once, nothing lost. Records that
    /// cannot be handled go to the dead-letter topic with headers saying why. SIGTERM or
    /// SIGINT stops intake, lets tickets in flight finish (worker.drain_timeout_ms), commits
    /// and exits 0; a second signal exits at once.
    ///
    /// Without a [kafka] section (or without any config), give --input: JSON Lines tickets
    /// from a file or standard input go through the same pipeline and the decisions are
    /// printed on standard output; bad lines are reported on stderr as FILE:LINE: class:
    /// message, and the exit status is 1 if there were any.
    ///
    /// Every setting is described in deploy/triage.example.toml. Secrets are read from
    /// environment variables or files named in the config, never from the command line.
    /// Log level: TRIAGE_LOG (e.g. TRIAGE_LOG=debug; default [log] level, else info, warn with
    /// --input); format: [log] format = "human" | "json". At info, one line per ticket: id,
    /// topic, partition, offset, symptoms, outcome (never ticket text or secrets).
    ///
    /// Operations: with [server] listen = "0.0.0.0:9898", /metrics (Prometheus), /healthz and
    /// /readyz are served. SIGHUP, or a change to the catalogue files, reloads the catalogue:
    /// an invalid one is refused (its problems are logged as path:line: message) and the one
    /// in service keeps serving; tickets in flight finish with the catalogue they started with.
    ///
    /// Examples:
    ///   triage run --input samples/tickets.jsonl
    ///   cat tickets.jsonl | triage run --input -
    ///   triage run --check-config /etc/triage/triage.toml
    ///   triage run --config /etc/triage/triage.toml
    ///   triage run --config jira.toml --input webhook-payloads.jsonl   # test an [input] shape
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Receive help-desk webhooks and produce them to the input topic of `triage run`.
    ///
    /// An HTTP/1.1 server with one route per help desk configured in the [ingest] section:
    ///   POST /webhooks/zendesk     signed: X-Zendesk-Webhook-Signature (+ -Timestamp)
    ///   POST /webhooks/jira        signed: X-Hub-Signature: sha256=<hex>
    ///   POST /webhooks/servicenow  shared token header, or basic auth
    ///   POST /webhooks/freshdesk   shared token header, or basic auth
    ///   POST /webhooks/generic     signed: HMAC-SHA256 of <timestamp>.<body>
    ///   POST /rt/nudge             with [ingest.rt]: read Request Tracker's feed now
    ///   GET  /metrics /healthz /readyz
    ///
    /// With [ingest.rt] it also follows Request Tracker's transactions (RT cannot push) and
    /// produces each new ticket the same way; its cursor is kept in ingest.rt.cursor_file.
    ///
    /// Each request is authenticated, its ticket found (id and text), and the record that
    /// `triage run` reads is produced keyed by ticket id. The answer is 200 only once Kafka has
    /// acknowledged the record (acks=all, idempotent producer); 503 with Retry-After when it
    /// did not within ingest.produce_timeout_ms, so the help desk retries and nothing is lost.
    /// Refused, and never produced: 400 malformed, 401 bad credentials or stale timestamp,
    /// 408 too slow, 409 replayed signature, 413 too large.
    ///
    /// Serve it behind a TLS-terminating proxy or ingress: help desks call HTTPS URLs.
    /// SIGTERM or SIGINT stops accepting connections and lets requests in flight finish
    /// (ingest.drain_timeout_ms); a second signal exits at once.
    ///
    /// Every setting is described in deploy/triage.example.toml. Secrets are read from
    /// environment variables or files named in the config, never from the command line.
    /// Log level: TRIAGE_LOG (e.g. TRIAGE_LOG=debug; default info).
    ///
    /// Examples:
    ///   triage ingest --check-config /etc/triage/triage.toml
    ///   triage ingest --config /etc/triage/triage.toml
    #[command(verbatim_doc_comment)]
    Ingest(IngestArgs),
    /// Print a JSON Schema of the catalogue format (for taplo / VS Code's Even Better TOML).
    ///
    /// Editors that check TOML against a schema then complete and check catalogues as they
    /// are typed; patterns/README.md shows how to wire it up. The schema checks field names,
    /// types and shapes; `triage check` remains the judge of everything else.
    ///
    /// Example:
    ///   triage schema > catalogue.schema.json
    #[command(verbatim_doc_comment)]
    Schema,
    /// Serve the catalogue author's workbench: a local page to try tickets and edits.
    ///
    /// Three views: try a ticket (symptoms, scores, the evidence highlighted in the text with
    /// the rule named, the words that did not count and why, the tags, and the note each help
    /// desk receives, rendered and as source); edit the catalogue (browse and search, checked
    /// as you type with the same path:line: problems as `triage check`; the edit applies to
    /// the page's session only); measure (with --labels: per-symptom precision, recall and F1,
    /// confusion, every miss and false positive, what an edit fixes and breaks before it is
    /// saved, and suggested phrases).
    ///
    /// The page is built into the binary; nothing is fetched from elsewhere and ticket text
    /// never leaves the machine. Files are written only with --write; otherwise the page
    /// offers the change as a diff. It listens on 127.0.0.1:8070 by default; on any address
    /// that is not loopback it refuses to start without an access token, read from the
    /// environment (TRIAGE_WORKBENCH_TOKEN) or from --token-file, never from the command line.
    ///
    /// Examples:
    ///   triage workbench --labels tests/data/tickets.jsonl
    ///   triage workbench --patterns patterns --labels tickets.jsonl --write
    #[command(verbatim_doc_comment)]
    Workbench(WorkbenchArgs),
    /// Suggest phrases from labelled tickets the catalogue gets wrong.
    ///
    /// For each symptom (or --symptom ID): phrases shared by the tickets it misses that appear
    /// mostly in tickets labelled with it (for `keywords`), and phrases shared by its false
    /// positives that its own tickets rarely hold (for `unless`). Each comes with its support
    /// (wrong tickets holding it), its precision over the labelled file, and the ticket ids it
    /// would fix and break, tried for real. Printed as TOML lines to paste into the symptom's
    /// array. Nothing is changed: a person reads and decides.
    ///
    /// Example:
    ///   triage suggest --labels tests/data/tickets.jsonl --symptom pin-locked
    #[command(verbatim_doc_comment)]
    Suggest(SuggestArgs),
}

#[derive(Args)]
struct WorkbenchArgs {
    #[command(flatten)]
    catalogue: CatalogueArg,
    /// Labelled tickets (JSON Lines with `labels`) for the measure view.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8070")]
    listen: std::net::SocketAddr,
    /// Let the page write the edited catalogue to its files.
    #[arg(long)]
    write: bool,
    /// File holding the access token (else TRIAGE_WORKBENCH_TOKEN; required off loopback).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Args)]
struct SuggestArgs {
    #[command(flatten)]
    catalogue: CatalogueArg,
    /// Labelled tickets (JSON Lines with `labels`).
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// Only this symptom.
    #[arg(long, value_name = "ID")]
    symptom: Option<String>,
    /// Suggestions per symptom and field.
    #[arg(long, value_name = "N", default_value_t = 5)]
    max: usize,
}

#[derive(Args)]
struct IngestArgs {
    /// Configuration with [kafka] and [ingest] sections (TOML).
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        required_unless_present = "check_config"
    )]
    config: Option<PathBuf>,
    /// Validate FILE (syntax, keys, values, secrets, Kafka producer properties) and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
}

#[derive(Args)]
struct CatalogueArg {
    /// Catalogue directory (or one .toml file). Default: ./patterns, else the built-in one.
    #[arg(long, short = 'p', value_name = "DIR")]
    patterns: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// One JSON object per line.
    Json,
    /// Readable, with evidence highlighted.
    Human,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    catalogue: CatalogueArg,
    /// Treat the whole input as the body of one ticket.
    #[arg(long)]
    text: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Colour for --format human.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Input file; `-` or nothing for standard input.
    #[arg(value_name = "FILE")]
    input: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    catalogue: CatalogueArg,
    /// Worker configuration (TOML; see deploy/triage.example.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE (syntax, keys, values, secrets, Kafka client properties) and exit.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "input"])]
    check_config: Option<PathBuf>,
    /// Read JSON Lines tickets from FILE (`-`: standard input) instead of Kafka.
    #[arg(long, short = 'i', value_name = "FILE")]
    input: Option<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    /// Catalogue directories or files.
    #[arg(value_name = "DIR")]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    catalogue: CatalogueArg,
    /// Labelled tickets (JSON Lines with `labels`).
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// Fail (exit 1) when macro F1 is below this.
    #[arg(long, value_name = "F1")]
    min_macro_f1: Option<f64>,
    /// Fail (exit 1) when the false-positive rate on off-topic tickets is above this.
    #[arg(long, value_name = "RATE")]
    max_fp_rate: Option<f64>,
    /// How many misclassified tickets to list (all by default).
    #[arg(long, value_name = "N")]
    show_misses: Option<usize>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(a) => classify(a),
        Command::Check(a) => check(a),
        Command::Eval(a) => eval_cmd(a),
        Command::Run(a) => run_cmd(a),
        Command::Ingest(a) => ingest_cmd(a),
        Command::Schema => schema_cmd(),
        Command::Workbench(a) => workbench_cmd(a),
        Command::Suggest(a) => suggest_cmd(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if io.kind() == io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("triage: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Where the catalogue the user asked for is: --patterns, ./patterns, or `None` (built in).
fn catalogue_path(arg: &CatalogueArg) -> Option<PathBuf> {
    match &arg.patterns {
        Some(p) => Some(p.clone()),
        None => {
            let local = Path::new("patterns");
            local.is_dir().then(|| local.to_path_buf())
        }
    }
}

/// The catalogue the user asked for: --patterns, ./patterns, or the built-in one.
fn load_catalogue(arg: &CatalogueArg) -> Result<Catalog> {
    match catalogue_path(arg) {
        Some(p) => Catalog::load(&p).map_err(|e| {
            anyhow::anyhow!(
                "{e}\n(the catalogue in {} is invalid; run `triage check {}` for every problem)",
                p.display(),
                p.display()
            )
        }),
        None => Ok(Catalog::builtin()),
    }
}

fn classifier(arg: &CatalogueArg) -> Result<Classifier> {
    Ok(Classifier::new(load_catalogue(arg)?)?)
}

fn open_input(path: Option<&Path>) -> Result<(String, Box<dyn BufRead>)> {
    match path {
        None => Ok(("<stdin>".into(), Box::new(io::stdin().lock()))),
        Some(p) if p == Path::new("-") => Ok(("<stdin>".into(), Box::new(io::stdin().lock()))),
        Some(p) => {
            let f = std::fs::File::open(p)
                .with_context(|| format!("{}: cannot open input", p.display()))?;
            Ok((p.display().to_string(), Box::new(io::BufReader::new(f))))
        }
    }
}

/// Read JSON Lines tickets; bad lines are reported and counted, not fatal.
fn read_tickets(
    name: &str,
    input: Box<dyn BufRead>,
    mut each: impl FnMut(Ticket) -> Result<()>,
) -> Result<usize> {
    let mut skipped = 0;
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line.with_context(|| format!("{name}: read failed"))?;
        let lineno = i + 1;
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "{name}:{lineno}: invalid UTF-8 at byte {}; line skipped",
                    e.valid_up_to()
                );
                skipped += 1;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        match Ticket::from_json(text) {
            Ok(t) => each(t)?,
            Err(e) => {
                eprintln!("{name}:{lineno}: {e}; line skipped");
                skipped += 1;
            }
        }
    }
    Ok(skipped)
}

fn classify(a: ClassifyArgs) -> Result<ExitCode> {
    let c = classifier(&a.catalogue)?;
    let (name, mut input) = open_input(a.input.as_deref())?;
    let stdout = io::stdout();
    let colour = match a.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = BufWriter::new(stdout.lock());
    let emit = |t: Ticket, out: &mut BufWriter<io::StdoutLock>| -> Result<()> {
        let d = Decision::new(c.catalog(), &t, c.classify(t.text()));
        match a.format {
            Format::Json => {
                serde_json::to_writer(&mut *out, &d)?;
                out.write_all(b"\n")?;
            }
            Format::Human => human(out, &t, &d, colour)?,
        }
        Ok(())
    };
    if a.text {
        let mut body = String::new();
        input
            .read_to_string(&mut body)
            .with_context(|| format!("{name}: cannot read text (expected UTF-8)"))?;
        let t = Ticket {
            id: name.clone(),
            body,
            ..Default::default()
        };
        emit(t, &mut out)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let skipped = read_tickets(&name, input, |t| emit(t, &mut out))?;
    out.flush()?;
    if skipped > 0 {
        eprintln!("triage: {skipped} line(s) of {name} skipped (see above)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn human(out: &mut impl Write, t: &Ticket, d: &Decision, colour: bool) -> Result<()> {
    let (b, r, y, dim, off) = if colour {
        ("\x1b[1m", "\x1b[1;31m", "\x1b[33m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "", "", "")
    };
    writeln!(
        out,
        "{b}ticket {}{off}  ({} symptom{})",
        t.id,
        d.symptoms.len(),
        if d.symptoms.len() == 1 { "" } else { "s" }
    )?;
    if d.symptoms.is_empty() {
        writeln!(out, "  {dim}no known symptom{off}\n")?;
        return Ok(());
    }
    for s in &d.symptoms {
        writeln!(out, "  {y}{}{off}  score {:.2}  {}", s.id, s.score, s.title)?;
        for w in &s.why {
            writeln!(out, "    {b}why{off} {w}")?;
        }
        for e in &s.evidence {
            let src = if e.field == "subject" {
                &t.subject
            } else {
                &t.body
            };
            // Show the line around the evidence with the match highlighted.
            let ls = src[..e.start].rfind('\n').map_or(0, |i| i + 1);
            let le = src[e.end..].find('\n').map_or(src.len(), |i| e.end + i);
            let (mut ls, mut le) = (ls, le);
            if e.start - ls > 60 {
                ls = floor_char(src, e.start - 60);
            }
            if le - e.end > 60 {
                le = floor_char(src, e.end + 60);
            }
            writeln!(
                out,
                "    {dim}{:<7} {:<34}{off} …{}{r}{}{off}{}…",
                e.field,
                truncate(&e.rule, 34),
                &src[ls..e.start].replace(['\n', '\r', '\t'], " "),
                &src[e.start..e.end].replace(['\n', '\r', '\t'], " "),
                &src[e.end..le].replace(['\n', '\r', '\t'], " "),
            )?;
        }
    }
    writeln!(out, "  tags: {}", d.tags.join(", "))?;
    writeln!(out, "  {dim}suggested reply:{off}")?;
    for l in d.reply.lines() {
        writeln!(out, "    {l}")?;
    }
    writeln!(out)?;
    Ok(())
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let paths = if a.paths.is_empty() {
        if Path::new("patterns").is_dir() {
            vec![PathBuf::from("patterns")]
        } else {
            let c = Catalog::builtin();
            println!(
                "ok: built-in catalogue {} {} ({} symptoms)",
                c.name,
                c.version,
                c.symptoms.len()
            );
            return Ok(ExitCode::SUCCESS);
        }
    } else {
        a.paths
    };
    let mut failed = false;
    for p in &paths {
        match Catalog::load(p) {
            Ok(c) => {
                let cl = Classifier::new(c)?;
                let c = cl.catalog();
                println!(
                    "ok: {}: {} {} ({} symptoms, {} phrases, {} typo-lexicon words, {})",
                    p.display(),
                    c.name,
                    c.version,
                    c.symptoms.len(),
                    cl.phrases().len(),
                    cl.lexicon_len(),
                    c.digest
                );
            }
            Err(e) => {
                failed = true;
                let problems = e.problems();
                for line in &problems {
                    println!("{line}");
                }
                eprintln!("triage: {}: {} problem(s)", p.display(), problems.len());
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn eval_cmd(a: EvalArgs) -> Result<ExitCode> {
    let c = classifier(&a.catalogue)?;
    let (name, input) = open_input(Some(&a.labels))?;
    let mut tickets = Vec::new();
    let mut unlabelled = 0;
    let skipped = read_tickets(&name, input, |t| {
        if t.labels.is_none() {
            unlabelled += 1;
        }
        tickets.push(t);
        Ok(())
    })?;
    if unlabelled > 0 {
        eprintln!(
            "triage: {unlabelled} ticket(s) of {name} have no `labels` and are not evaluated"
        );
    }
    let unknown = eval::unknown_labels(&c, &tickets);
    for (id, l) in &unknown {
        eprintln!(
            "{name}: ticket {id}: label `{l}` is no symptom of catalogue {}",
            c.catalog().name
        );
    }
    if tickets.is_empty() {
        bail!("{name}: no labelled tickets to evaluate");
    }
    let tty = io::stderr().is_terminal();
    let total = tickets.len();
    let report = eval::evaluate(&c, &tickets, |done| {
        if tty && total >= 500 {
            eprint!("\revaluating: {done}/{total}");
            if done == total {
                eprintln!();
            }
        }
    });
    let mut out = BufWriter::new(io::stdout().lock());
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_report(&mut out, &report, c.catalog(), a.show_misses)?;
    }
    out.flush()?;
    let mut failed = skipped > 0 || !unknown.is_empty();
    if let Some(min) = a.min_macro_f1 {
        if report.macro_f1 < min {
            eprintln!(
                "triage: gate failed: macro F1 {:.3} < {min}",
                report.macro_f1
            );
            failed = true;
        }
    }
    if let Some(max) = a.max_fp_rate {
        if report.false_positive_rate > max {
            eprintln!(
                "triage: gate failed: false-positive rate {:.3} > {max}",
                report.false_positive_rate
            );
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(
    out: &mut impl Write,
    r: &eval::Report,
    cat: &Catalog,
    show: Option<usize>,
) -> Result<()> {
    writeln!(
        out,
        "catalogue {} {} ({}), {} labelled tickets",
        cat.name, cat.version, cat.digest, r.tickets
    )?;
    writeln!(
        out,
        "{:<24} {:>7} {:>5} {:>5} {:>5} {:>9} {:>7} {:>6}",
        "symptom", "support", "tp", "fp", "fn", "precision", "recall", "f1"
    )?;
    for s in &r.symptoms {
        writeln!(
            out,
            "{:<24} {:>7} {:>5} {:>5} {:>5} {:>9.3} {:>7.3} {:>6.3}",
            s.id, s.support, s.tp, s.fp, s.fn_, s.precision, s.recall, s.f1
        )?;
    }
    writeln!(
        out,
        "micro F1 {:.3}   macro F1 {:.3}",
        r.micro_f1, r.macro_f1
    )?;
    writeln!(
        out,
        "off-topic tickets {}: {} with a symptom, false-positive rate {:.3}",
        r.off_topic, r.off_topic_false_positives, r.false_positive_rate
    )?;
    if r.confusion.is_empty() {
        writeln!(
            out,
            "\nconfusion: no symptom found on a ticket labelled with another"
        )?;
    } else {
        writeln!(
            out,
            "\nconfusion (labelled -> found though not labelled; \"instead\": the label was not found):"
        )?;
    }
    for c in &r.confusion {
        let pair = format!("{} -> {}", c.expected, c.found);
        let instead = if c.instead > 0 {
            format!(" ({} instead)", c.instead)
        } else {
            String::new()
        };
        writeln!(
            out,
            "  {pair:<48} {:>3}{instead}: {}",
            c.count,
            c.tickets.join(", ")
        )?;
    }
    if !r.off_topic_by_symptom.is_empty() {
        writeln!(out, "\noff-topic false positives by symptom found:")?;
    }
    for g in &r.off_topic_by_symptom {
        writeln!(
            out,
            "  {:<24} {:>3} off-topic ticket{}: {}",
            g.symptom,
            g.count,
            if g.count == 1 { "" } else { "s" },
            g.tickets.join(", ")
        )?;
    }
    let n = show.unwrap_or(usize::MAX).min(r.misclassified.len());
    if n > 0 {
        writeln!(out, "\nmisclassified ({} of {}):", n, r.misclassified.len())?;
    }
    for m in r.misclassified.iter().take(n) {
        writeln!(
            out,
            "  {}: expected [{}], found [{}]",
            m.id,
            m.expected.join(", "),
            m.found.join(", ")
        )?;
        for f in &m.findings {
            let ev: Vec<String> = f
                .evidence
                .iter()
                .map(|e| format!("{} {:?}", e.rule, truncate(&e.text, 40)))
                .collect();
            writeln!(out, "    {} {:.2}: {}", f.id, f.score, ev.join("; "))?;
        }
    }
    Ok(())
}

fn run_cmd(a: RunArgs) -> Result<ExitCode> {
    use triage::config::Settings;
    if let Some(path) = &a.check_config {
        let settings = Settings::load(path)?;
        if let Some(k) = &settings.kafka {
            triage::kafka::check_properties(k, &settings.worker)?;
        }
        let c = classifier(&a.catalogue)?;
        println!("ok: {}", path.display());
        print!("{}", describe(&settings, c.catalog()));
        return Ok(ExitCode::SUCCESS);
    }
    let settings = match &a.config {
        Some(p) => Settings::load(p)?,
        None => Settings::embedded(),
    };
    if a.input.is_none() && settings.kafka.is_none() {
        bail!(
            "nothing to read: give --input FILE (or - for standard input), or --config FILE with a [kafka] section\n(see `triage run --help`)"
        );
    }
    let quiet = a.input.is_some();
    init_logging(&settings.log, quiet);
    let c = classifier(&a.catalogue)?;
    let telemetry = triage::server::Telemetry::default();
    let catalogue =
        triage::reload::LiveCatalogue::new(c, catalogue_path(&a.catalogue), &telemetry.metrics);
    let runtime = if quiet {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    let summary = runtime.block_on(async {
        let signals = triage::shutdown::Signals::listen()?;
        let input = a.input.as_deref();
        let run =
            triage::worker::run_with(&settings, catalogue, &telemetry, input, signals.token());
        tokio::select! {
            r = run => anyhow::Ok(r?),
            () = signals.second() => exit_on_second_signal(),
        }
    })?;
    if quiet && summary.dead_lettered > 0 {
        let name = a
            .input
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        eprintln!(
            "triage: {} record(s) of {name} not decided (see above)",
            summary.dead_lettered
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn schema_cmd() -> Result<ExitCode> {
    let mut out = BufWriter::new(io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &triage::workbench::schema::catalogue_schema())?;
    writeln!(out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn workbench_cmd(a: WorkbenchArgs) -> Result<ExitCode> {
    use triage::workbench::{self, Bench, ServeOptions};
    let token = match &a.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the access token", p.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var(workbench::TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty()),
    };
    workbench::check_access(a.listen, token.as_deref())?;
    let patterns = catalogue_path(&a.catalogue);
    let bench = Bench::open(patterns.as_deref(), a.labels.as_deref(), a.write)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let with_token = token.is_some();
    runtime.block_on(workbench::serve(
        std::sync::Arc::new(bench),
        ServeOptions {
            listen: a.listen,
            token,
        },
        move |addr| {
            eprintln!(
                "triage workbench: open http://{addr}/ {}(Ctrl-C stops it)",
                if with_token {
                    "and give the access token "
                } else {
                    ""
                }
            );
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn suggest_cmd(a: SuggestArgs) -> Result<ExitCode> {
    use triage::workbench::{read_labelled, suggest};
    let c = classifier(&a.catalogue)?;
    let tickets = read_labelled(&a.labels)?;
    if let Some(id) = &a.symptom {
        if c.catalog().symptom(id).is_none() {
            bail!("`{id}` is no symptom of catalogue {}", c.catalog().name);
        }
    }
    let prepared = suggest::Prepared::new(&c, &tickets);
    let found = suggest::suggest(&c, &tickets, &prepared, a.symptom.as_deref(), a.max);
    let mut out = BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "# suggestions from {} for catalogue {} {}: phrases to consider, never applied by triage",
        a.labels.display(),
        c.catalog().name,
        c.catalog().version
    )?;
    writeln!(
        out,
        "# support: wrong tickets holding the phrase; precision: share of the file's tickets holding it that agree"
    )?;
    let mut last = None;
    for s in &found {
        let key = (s.symptom.clone(), s.field);
        if last.as_ref() != Some(&key) {
            let what = match s.field {
                suggest::Field::Keywords => "tickets it misses",
                suggest::Field::Unless => "its false positives",
            };
            writeln!(
                out,
                "\n# symptom `{}`, from {what}: add to {} = [ ... ]",
                s.symptom,
                s.field.name()
            )?;
            last = Some(key);
        }
        writeln!(out, "{}", s.toml_line())?;
    }
    if found.is_empty() {
        writeln!(out, "\n# no phrase found that fixes a wrong ticket")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn ingest_cmd(a: IngestArgs) -> Result<ExitCode> {
    use triage::config::Settings;
    use triage::ingest::config::Forward;
    let path = a
        .check_config
        .as_ref()
        .or(a.config.as_ref())
        .expect("clap requires one of them");
    let settings = Settings::load(path)?;
    let (Some(ingest), Some(kafka)) = (&settings.ingest, &settings.kafka) else {
        bail!(
            "{}: no [ingest] section: nothing to serve (see deploy/triage.example.toml)",
            path.display()
        );
    };
    if a.check_config.is_some() {
        // Reads the webhook secrets and builds the producer (properties checked, no request).
        drop(triage::ingest::prepare(
            &settings,
            prometheus::Registry::new(),
        )?);
        println!("ok: {}", path.display());
        println!(
            "  listen {} -> kafka {} topic {}",
            ingest.listen, kafka.bootstrap_servers, ingest.topic
        );
        for s in &ingest.sources {
            println!(
                "  POST {:<21} {}; writes {}",
                s.kind.path(),
                s.auth.describe(),
                match s.forward {
                    Forward::Raw => "the payload as received",
                    Forward::Plain => "the plain shape",
                }
            );
        }
        if let Some(rt) = &ingest.rt {
            println!(
                "  pull   {} (RT transactions, every {} ms; cursor {}); POST /rt/nudge polls now",
                rt.base_url,
                rt.poll_interval.as_millis(),
                rt.cursor_file.display()
            );
        }
        println!(
            "  limits: max_body_bytes {}, max_concurrent_requests {}, max_connections {}, request_timeout_ms {}, produce_timeout_ms {}, retry_after_s {}, timestamp_tolerance_s {}, replay_cache_entries {}, drain_timeout_ms {}",
            ingest.max_body_bytes,
            ingest.max_concurrent_requests,
            ingest.max_connections,
            ingest.request_timeout.as_millis(),
            ingest.produce_timeout.as_millis(),
            ingest.retry_after.as_secs(),
            ingest.timestamp_tolerance.as_secs(),
            ingest.replay_cache_entries,
            ingest.drain_timeout.as_millis()
        );
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&settings.log, false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let signals = triage::shutdown::Signals::listen()?;
        tokio::select! {
            r = triage::ingest::run(&settings, signals.token()) => anyhow::Ok(r?),
            () = signals.second() => exit_on_second_signal(),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A second stop signal: exit at once (status 130) without waiting for the drain.
fn exit_on_second_signal() -> ! {
    tracing::warn!(
        "second stop signal: exiting now; tickets in flight will be handled again after a restart"
    );
    std::process::exit(130);
}

/// Logs on standard error: TRIAGE_LOG, else `[log] level`, else info (warn for --input); in
/// the format `[log] format` says.
fn init_logging(log: &triage::config::LogSettings, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TRIAGE_LOG").unwrap_or_else(|_| {
        let default = if quiet { "warn" } else { "info" };
        EnvFilter::new(log.level.as_deref().unwrap_or(default))
    });
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match log.format {
        triage::config::LogFormat::Human => fmt.with_ansi(io::stderr().is_terminal()).init(),
        triage::config::LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

/// What a valid configuration will do, for --check-config (no secrets).
fn describe(s: &triage::config::Settings, catalog: &Catalog) -> String {
    let mut out = String::new();
    let w = &s.worker;
    if let Some(k) = &s.kafka {
        out += &format!(
            "  kafka: {} group {}: {} -> decisions {}, dead letters {}\n",
            k.bootstrap_servers,
            k.group_id,
            k.input_topic,
            k.decisions_topic.as_deref().unwrap_or("(none)"),
            k.dead_letter_topic
        );
        let secrets: Vec<&str> = k.secret_properties.keys().map(String::as_str).collect();
        if !secrets.is_empty() {
            out += &format!("  secret properties (resolved): {}\n", secrets.join(", "));
        }
    } else {
        out += "  no [kafka] section: reads JSON Lines given with --input\n";
    }
    let mut sinks = Vec::new();
    if s.kafka
        .as_ref()
        .is_some_and(|k| k.decisions_topic.is_some())
    {
        sinks.push("decisions topic".to_string());
    }
    if let Some(wh) = &s.sink.webhook {
        sinks.push(format!(
            "webhook {} ({}{})",
            wh.url,
            wh.mode.as_str(),
            if wh.signing_secret.is_some() {
                ", signed"
            } else {
                ""
            }
        ));
    }
    let ticketing = [
        ("zendesk", s.sink.zendesk.as_ref().map(|z| &z.api)),
        ("jira", s.sink.jira.as_ref().map(|j| &j.api)),
        ("servicenow", s.sink.servicenow.as_ref().map(|n| &n.api)),
        ("freshdesk", s.sink.freshdesk.as_ref().map(|f| &f.api)),
        ("rt", s.sink.rt.as_ref().map(|r| &r.api)),
    ];
    for (name, api) in ticketing {
        if let Some(a) = api {
            sinks.push(format!(
                "{name} {} ({}, at most {} requests/min{})",
                a.base_url,
                a.mode.as_str(),
                a.limits.requests_per_minute,
                if a.allow_public_reply {
                    ", public replies allowed"
                } else {
                    ""
                }
            ));
        }
    }
    if s.sink.stdout {
        sinks.push("stdout".into());
    }
    out += &format!("  sinks: {}\n", sinks.join(", "));
    out += &format!(
        "  input: id {} subject {} body {} tags {} author {} updated {}\n",
        s.input.id,
        s.input.subject.as_deref().unwrap_or("-"),
        s.input.body,
        s.input.tags.as_deref().unwrap_or("-"),
        s.input.author.as_deref().unwrap_or("-"),
        s.input.updated_stamp.as_deref().unwrap_or("-"),
    );
    out += &format!(
        "  worker: max_in_flight {}, max_concurrent_tickets {}, max_ticket_bytes {}, oversize {}{}, drain_timeout_ms {}, commit_interval_ms {}, marker_tag {}, api_user {}\n",
        w.max_in_flight,
        w.max_concurrent_tickets,
        w.max_ticket_bytes,
        w.oversize.name(),
        match w.oversize {
            triage::config::Oversize::DeadLetter => String::new(),
            triage::config::Oversize::ScanPrefix => format!(" (records up to max_record_bytes {})", w.max_record_bytes),
        },
        w.drain_timeout.as_millis(),
        w.commit_interval.as_millis(),
        w.marker_tag,
        w.api_user.as_deref().unwrap_or("(none)")
    );
    out += &format!(
        "  catalogue: {} {} ({} symptoms); reload on SIGHUP{}\n",
        catalog.name,
        catalog.version,
        catalog.symptoms.len(),
        if s.catalogue.watch {
            format!(
                " and when its files change (checked every {} ms)",
                s.catalogue.watch_interval.as_millis()
            )
        } else {
            String::new()
        }
    );
    match s.server.listen {
        Some(a) => out += &format!("  server: /metrics, /healthz, /readyz on {a}\n"),
        None => out += "  server: off (set [server] listen to serve /metrics, /healthz, /readyz)\n",
    }
    out += &format!(
        "  log: {} format, level {}\n",
        match s.log.format {
            triage::config::LogFormat::Human => "human",
            triage::config::LogFormat::Json => "json",
        },
        s.log.level.as_deref().unwrap_or("info")
    );
    out
}
