//! Kea's unix control socket: one JSON command written, one JSON answer read (Kea closes the
//! connection after answering). The caller builds and reads the JSON; this is the I/O only,
//! blocking, bounded by a timeout (run it off the async threads).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Kea's answers to `config-get` are the whole config: more than this is refused.
const MAX_ANSWER: u64 = 16 << 20;

/// Sends `command` (a JSON object as text) to the Kea control socket at `socket` and returns
/// its answer (text). The error names the socket.
pub fn command(socket: &Path, command: &str, timeout: Duration) -> std::io::Result<String> {
    let err =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", socket.display()));
    let mut s = UnixStream::connect(socket).map_err(err)?;
    s.set_read_timeout(Some(timeout)).map_err(err)?;
    s.set_write_timeout(Some(timeout)).map_err(err)?;
    s.write_all(command.as_bytes()).map_err(err)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() as u64 > MAX_ANSWER {
                    return Err(err(std::io::Error::other("answer too long")));
                }
                // Kea 2.2 may keep the connection open: a whole JSON value is the answer.
                if answer.ends_with(b"}") && balanced(&answer) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err(e)),
        }
    }
    String::from_utf8(answer).map_err(|_| err(std::io::Error::other("answer is not UTF-8")))
}

/// Whether the braces of a JSON text (outside strings) are balanced.
fn balanced(text: &[u8]) -> bool {
    let (mut depth, mut in_str, mut esc) = (0i64, false, false);
    for &b in text {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    depth == 0 && !in_str
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_ignores_braces_in_strings() {
        assert!(balanced(br#"{"result": 0, "text": "a } b"}"#));
        assert!(!balanced(br#"{"result": 0, "arguments": {"#));
        assert!(!balanced(br#"{"text": "unterminated }"#));
    }

    #[test]
    fn a_command_gets_its_answer() {
        let dir = std::env::temp_dir().join(format!("kea-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("sock");
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().expect("accept");
            let mut b = [0u8; 256];
            let n = c.read(&mut b).expect("read");
            assert!(b[..n].starts_with(b"{\"command\""));
            c.write_all(br#"{ "result": 0, "text": "ok" }"#)
                .expect("write");
            // Kept open: the answer is whole anyway.
            std::thread::sleep(Duration::from_millis(500));
        });
        let a = command(
            &path,
            r#"{"command": "status-get"}"#,
            Duration::from_secs(5),
        )
        .expect("answer");
        assert_eq!(a, r#"{ "result": 0, "text": "ok" }"#);
        t.join().expect("join");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(command(&dir.join("none"), "{}", Duration::from_secs(1))
            .expect_err("no socket")
            .to_string()
            .contains("none"));
    }
}
