//! Where the logs go: to the journal (with priorities from the levels and every event's fields
//! as journal fields, e.g. `VHID`, `INTERFACE`, `STATE`) when stderr is the journal's stream,
//! i.e. when systemd runs tandem; to stderr as text otherwise. `TANDEM_LOG` filters both.

use std::fmt;
use tracing_subscriber::field::{RecordFields, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Fields that a log call also writes into its message (`vhid=7 iface=lan BACKUP -> MASTER
/// reason=...`): for the journal's structured fields only, so stderr shows them once.
const IN_MESSAGE: &[&str] = &["vhid", "interface", "state", "from", "reason"];

pub fn init() {
    let filter =
        || EnvFilter::try_from_env("TANDEM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if linux::systemd::stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                // Fields under their own names (VHID, not F_VHID): `journalctl VHID=7`.
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier("tandem".into());
                tracing_subscriber::registry()
                    .with(filter())
                    .with(journal)
                    .init();
                return;
            }
            Err(e) => eprintln!("tandem: cannot log to the journal ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .fmt_fields(Fields)
        .init();
}

/// The message, then every field it does not already say, as ` name=value`.
struct Fields;

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut v);
        v.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || IN_MESSAGE.contains(&field.name()) {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{sep}{value:?}")
        } else {
            write!(self.writer, "{sep}{}={value:?}", field.name())
        };
    }
}
