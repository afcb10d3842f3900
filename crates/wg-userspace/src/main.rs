//! `wg-userspace run DEVICE SOCKET`: creates the tun device DEVICE in the current network
//! namespace, runs boringtun on it, and serves WireGuard's UAPI (`set=1` / `get=1`) on the
//! Unix socket SOCKET (boringtun's own socket would be /var/run/wireguard/DEVICE.sock, shared
//! by every namespace of the machine). Runs until killed.
//!
//! `wg-userspace pubkey`: reads a private key (base64) on stdin, prints its public key.
//!
//! Test support only: the tests start it in their namespaces, as an admin starts boringtun.

use base64::Engine;
use boringtun::device::{DeviceConfig, DeviceHandle};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pubkey"] => pubkey(),
        ["run", device, socket] => run(device, socket),
        _ => Err("usage: wg-userspace run DEVICE SOCKET | wg-userspace pubkey".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wg-userspace: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pubkey() -> Result<(), String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes: [u8; 32] = b64
        .decode(s.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("not a base64 key of 32 bytes")?;
    let secret = boringtun::x25519::StaticSecret::from(bytes);
    let public = boringtun::x25519::PublicKey::from(&secret);
    println!("{}", b64.encode(public.as_bytes()));
    Ok(())
}

fn run(device: &str, socket: &str) -> Result<(), String> {
    // boringtun takes its UAPI as one stream (it handles a request each time the stream is
    // readable); each connection to SOCKET is passed through it, one at a time.
    let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
    let config = DeviceConfig {
        n_threads: 2,
        use_connected_socket: true,
        use_multi_queue: false,
        uapi_fd: theirs.into_raw_fd(),
    };
    let _handle = DeviceHandle::new(device, config).map_err(|e| format!("{device}: {e:?}"))?;
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|e| format!("{socket}: {e}"))?;
    eprintln!("wg-userspace: {device} running, UAPI on {socket}");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if let Err(e) = pass(&conn, &ours) {
            eprintln!("wg-userspace: {e}");
        }
    }
    Ok(())
}

/// One request from `client` through boringtun's stream, and its answer back.
fn pass(client: &UnixStream, dev: &UnixStream) -> std::io::Result<()> {
    let mut from_client = BufReader::new(client);
    let mut first = String::new();
    from_client.read_line(&mut first)?;
    let mut request = first.clone();
    if first.trim_end() == "set=1" {
        loop {
            let mut line = String::new();
            if from_client.read_line(&mut line)? == 0 {
                break;
            }
            request.push_str(&line);
            if line == "\n" {
                break;
            }
        }
    }
    // `get=1` goes without its blank line: boringtun reads one line for it, and a blank line
    // left in the stream would be taken as a second (invalid) request.
    (&*dev).write_all(request.as_bytes())?;
    let mut answer = String::new();
    let mut from_dev = BufReader::new(dev);
    loop {
        let mut line = String::new();
        if from_dev.read_line(&mut line)? == 0 {
            break;
        }
        answer.push_str(&line);
        if line.starts_with("errno=") {
            let mut blank = String::new();
            from_dev.read_line(&mut blank)?;
            answer.push('\n');
            break;
        }
    }
    (&*client).write_all(answer.as_bytes())
}
