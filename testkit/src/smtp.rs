//! An in-process SMTP server for tests (a subset of RFC 5321: no TLS, no AUTH).
//!
//! [`SmtpSink::start`] binds `127.0.0.1` on a free port and records every message
//! it is handed. Point the code under test at [`SmtpSink::url`] (or at
//! `127.0.0.1` and [`SmtpSink::port`]), then read what arrived with
//! [`SmtpSink::messages`] or [`SmtpSink::wait_for`].
//!
//! Supported commands: `EHLO`, `HELO`, `MAIL FROM`, `RCPT TO` (several),
//! `DATA` (dot-unstuffing, ends at `CRLF.CRLF`), `RSET`, `NOOP`, `QUIT`. Any other
//! command is answered `502`, commands out of order `503`. A connection may carry
//! any number of messages, and any number of connections are served concurrently.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Longest line (command or message line) accepted, terminator included.
const MAX_LINE: u64 = 64 * 1024;
/// Largest message accepted by `DATA`; larger ones are read to the end and refused with 552.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;
/// How deep nested multiparts are walked when decoding bodies.
const MAX_MIME_DEPTH: usize = 8;

/// A message as it was received: the envelope and the raw content of `DATA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The envelope sender (`MAIL FROM`), without angle brackets; empty for the null path `<>`.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), in order, without angle brackets.
    pub to: Vec<String>,
    /// The message content (headers and body) after dot-unstuffing, line endings as sent.
    pub data: String,
}

/// A running SMTP server on `127.0.0.1`; it stops (with its connections) when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    port: u16,
    messages: watch::Sender<Vec<ReceivedMessage>>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Binds `127.0.0.1` on a free port and starts serving.
    pub async fn start() -> anyhow::Result<SmtpSink> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("binding the SMTP sink on 127.0.0.1")?;
        let port = listener
            .local_addr()
            .context("reading the SMTP sink's address")?
            .port();
        let (messages, _) = watch::channel(Vec::new());
        let task = tokio::spawn(accept_loop(listener, messages.clone()));
        tracing::debug!(port, "SMTP sink listening");
        Ok(SmtpSink {
            port,
            messages,
            task,
        })
    }

    /// The port the sink listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:PORT`: plain SMTP with no TLS, the form lettre's
    /// `from_url` (and most URL-configured mailers) take for an unencrypted server.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// A snapshot of the messages received so far, in order of arrival.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.messages.borrow().clone()
    }

    /// Waits until at least `n` messages have arrived and returns all received so far;
    /// fails after `timeout`, saying how many had arrived.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedMessage>> {
        let mut rx = self.messages.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|m| m.len() >= n)).await {
            Ok(Ok(messages)) => Ok(messages.clone()),
            Ok(Err(_)) => Err(anyhow!("SMTP sink closed while waiting for {n} message(s)")),
            Err(_) => {
                let arrived = self.messages.borrow().len();
                Err(anyhow!(
                    "timed out after {timeout:?} waiting for {n} SMTP message(s): {arrived} arrived"
                ))
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // The connection tasks live in a JoinSet owned by this task: aborting it drops
        // the set, which aborts them too.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, messages: watch::Sender<Vec<ReceivedMessage>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let messages = messages.clone();
                    connections.spawn(async move {
                        if let Err(error) = serve(stream, &messages).await {
                            tracing::debug!(%peer, error = format!("{error:#}"), "SMTP sink connection ended");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "SMTP sink accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

/// The state of the mail transaction on one connection.
#[derive(Default)]
struct Session {
    greeted: bool,
    from: Option<String>,
    to: Vec<String>,
}

impl Session {
    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
    }
}

async fn serve(
    stream: TcpStream,
    messages: &watch::Sender<Vec<ReceivedMessage>>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let mut session = Session::default();

    reply(&mut write, "220 127.0.0.1 ESMTP hashgrid testkit SMTP sink").await?;
    loop {
        match read_line(&mut reader, &mut line).await? {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                reply(&mut write, "500 5.5.2 Line too long").await?;
                return Ok(());
            }
            Line::Complete => {}
        }
        let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        let (verb, arg) = match text.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => {
                reply(&mut write, "501 5.5.4 Domain name required").await?;
            }
            "EHLO" => {
                session.reset();
                session.greeted = true;
                reply(
                    &mut write,
                    &format!(
                        "250-127.0.0.1 greets {arg}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
                         250-PIPELINING\r\n250-SIZE {MAX_MESSAGE}\r\n250 ENHANCEDSTATUSCODES"
                    ),
                )
                .await?;
            }
            "HELO" => {
                session.reset();
                session.greeted = true;
                reply(&mut write, &format!("250 127.0.0.1 greets {arg}")).await?;
            }
            "MAIL" => {
                if !session.greeted {
                    reply(&mut write, "503 5.5.1 Send EHLO or HELO first").await?;
                } else if session.from.is_some() {
                    reply(&mut write, "503 5.5.1 Sender already given").await?;
                } else {
                    match path_argument(arg, "FROM:") {
                        Some(path) => {
                            session.from = Some(path);
                            reply(&mut write, "250 2.1.0 OK").await?;
                        }
                        None => reply(&mut write, "501 5.5.4 Syntax: MAIL FROM:<address>").await?,
                    }
                }
            }
            "RCPT" => {
                if session.from.is_none() {
                    reply(&mut write, "503 5.5.1 Need MAIL before RCPT").await?;
                } else {
                    match path_argument(arg, "TO:").filter(|path| !path.is_empty()) {
                        Some(path) => {
                            session.to.push(path);
                            reply(&mut write, "250 2.1.5 OK").await?;
                        }
                        None => reply(&mut write, "501 5.5.4 Syntax: RCPT TO:<address>").await?,
                    }
                }
            }
            "DATA" => {
                if !arg.is_empty() {
                    reply(&mut write, "501 5.5.4 DATA takes no argument").await?;
                } else if session.from.is_none() {
                    reply(&mut write, "503 5.5.1 Need MAIL before DATA").await?;
                } else if session.to.is_empty() {
                    reply(&mut write, "503 5.5.1 Need RCPT before DATA").await?;
                } else {
                    reply(&mut write, "354 Start mail input; end with <CRLF>.<CRLF>").await?;
                    let Some(data) = read_data(&mut reader, &mut line).await? else {
                        reply(&mut write, "552 5.3.4 Message too big").await?;
                        session.reset();
                        continue;
                    };
                    let message = ReceivedMessage {
                        from: session.from.take().unwrap_or_default(),
                        to: std::mem::take(&mut session.to),
                        data: String::from_utf8_lossy(&data).into_owned(),
                    };
                    let mut id = 0;
                    messages.send_modify(|all| {
                        all.push(message);
                        id = all.len();
                    });
                    reply(&mut write, &format!("250 2.0.0 OK queued as {id}")).await?;
                }
            }
            "RSET" => {
                session.reset();
                reply(&mut write, "250 2.0.0 OK").await?;
            }
            "NOOP" => reply(&mut write, "250 2.0.0 OK").await?,
            "QUIT" => {
                reply(&mut write, "221 2.0.0 Bye").await?;
                write.shutdown().await.ok();
                return Ok(());
            }
            _ => reply(&mut write, "502 5.5.1 Command not implemented").await?,
        }
    }
}

enum Line {
    Complete,
    TooLong,
    Eof,
}

/// Reads one line, terminator included, into `buf`.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Line> {
    buf.clear();
    let read = reader
        .take(MAX_LINE)
        .read_until(b'\n', buf)
        .await
        .context("reading from the SMTP client")?;
    Ok(if buf.ends_with(b"\n") {
        Line::Complete
    } else if read as u64 >= MAX_LINE {
        Line::TooLong
    } else {
        // End of stream, possibly in the middle of a line: the client is gone.
        Line::Eof
    })
}

/// Reads the content of `DATA` up to the `.` line, undoing dot-stuffing. `None` when
/// the message was larger than [`MAX_MESSAGE`] (it is still read to its end).
async fn read_data<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut too_big = false;
    loop {
        match read_line(reader, line).await? {
            Line::Complete => {}
            Line::TooLong => anyhow::bail!("line longer than {MAX_LINE} bytes in DATA"),
            Line::Eof => anyhow::bail!("connection closed in the middle of DATA"),
        }
        if trim_eol(line) == b"." {
            return Ok((!too_big).then_some(data));
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(line);
        if data.len() + unstuffed.len() > MAX_MESSAGE {
            too_big = true;
            data = Vec::new();
        }
        if !too_big {
            data.extend_from_slice(unstuffed);
        }
    }
}

async fn reply<W: AsyncWrite + Unpin>(write: &mut W, text: &str) -> anyhow::Result<()> {
    write
        .write_all(format!("{text}\r\n").as_bytes())
        .await
        .context("writing to the SMTP client")
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses `FROM:<path> [params]` / `TO:<path> [params]` (the keyword case-insensitive,
/// a space after the colon tolerated) into the bare path.
fn path_argument(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    let path = &inner[..end];
    // A source route (`<@a,@b:user@c>`) is to be accepted and ignored (RFC 5321 4.1.2).
    let path = match path.split_once(':') {
        Some((route, mailbox)) if route.starts_with('@') => mailbox,
        _ => path,
    };
    Some(path.to_owned())
}

impl ReceivedMessage {
    /// The unfolded value of the first header called `name` (case-insensitive), as sent.
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = split_head(&self.data);
        header_value(headers, name)
    }

    /// The `Subject` header, unfolded, with RFC 2047 encoded-words decoded.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject").map(|s| decode_encoded_words(&s))
    }

    /// The bodies of the message's text parts, decoded from quoted-printable or
    /// base64 where their `Content-Transfer-Encoding` says so, joined by newlines.
    pub fn decoded_body(&self) -> String {
        let mut parts = Vec::new();
        collect_parts(&self.data, 0, &mut parts);
        parts.join("\n")
    }

    /// Whether `needle` occurs in the body, raw as sent or decoded (see [`Self::decoded_body`]).
    pub fn body_contains(&self, needle: &str) -> bool {
        let (_, body) = split_head(&self.data);
        body.contains(needle) || self.decoded_body().contains(needle)
    }

    /// The `VALUE` of the first `token=VALUE` (`VALUE` being `[A-Za-z0-9_-]+`) in the
    /// decoded body, else in the raw data.
    pub fn find_token(&self) -> Option<String> {
        find_token_in(&self.decoded_body()).or_else(|| find_token_in(&self.data))
    }
}

fn find_token_in(text: &str) -> Option<String> {
    const KEY: &str = "token=";
    let mut from = 0;
    while let Some(at) = text[from..].find(KEY) {
        let start = from + at + KEY.len();
        let value: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !value.is_empty() {
            return Some(value);
        }
        from = start;
    }
    None
}

/// Splits a message (or MIME part) into its header block and its body.
fn split_head(data: &str) -> (&str, &str) {
    if data.starts_with("\r\n") || data.starts_with('\n') {
        return ("", data.trim_start_matches('\r').trim_start_matches('\n'));
    }
    let crlf = data.find("\r\n\r\n").map(|i| (i, 4));
    let lf = data.find("\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => {
            let (i, len) = if a.0 <= b.0 { a } else { b };
            (&data[..i], &data[i + len..])
        }
        (Some((i, len)), None) | (None, Some((i, len))) => (&data[..i], &data[i + len..]),
        (None, None) => (data, ""),
    }
}

/// The unfolded value of header `name` in a header block.
fn header_value(headers: &str, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in headers.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            // A continuation: unfolding removes the line break and keeps the whitespace.
            if let Some(value) = found.as_mut() {
                value.push_str(line);
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((key, value)) = line.split_once(':')
            && key.trim().eq_ignore_ascii_case(name)
        {
            found = Some(value.trim_start().to_owned());
        }
    }
    found.map(|v| v.trim_end().to_owned())
}

/// The value of parameter `param` (e.g. `boundary`) in a structured header value.
fn header_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|item| {
        let (key, val) = item.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case(param) {
            return None;
        }
        let val = val.trim();
        Some(match val.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or_default().to_owned(),
            None => val.to_owned(),
        })
    })
}

/// Decodes the leaf parts of a MIME entity into `out`, walking multiparts.
fn collect_parts(entity: &str, depth: usize, out: &mut Vec<String>) {
    let (headers, body) = split_head(entity);
    let content_type = header_value(headers, "Content-Type").unwrap_or_default();
    if content_type.to_ascii_lowercase().starts_with("multipart/")
        && depth < MAX_MIME_DEPTH
        && let Some(boundary) = header_param(&content_type, "boundary")
    {
        for part in multipart_parts(body, &boundary) {
            collect_parts(part, depth + 1, out);
        }
        return;
    }
    let encoding = header_value(headers, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let decoded = match encoding.trim() {
        "quoted-printable" => {
            String::from_utf8_lossy(&decode_quoted_printable(body.as_bytes())).into_owned()
        }
        "base64" => String::from_utf8_lossy(&decode_base64(body.as_bytes())).into_owned(),
        _ => body.to_owned(),
    };
    out.push(decoded);
}

/// The parts of a multipart body, between `--boundary` delimiter lines (the line
/// break before a delimiter belongs to the delimiter).
fn multipart_parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let bare = line.trim_end();
        if let Some(rest) = bare.strip_prefix(delimiter.as_str())
            && (rest.is_empty() || rest == "--")
        {
            if let Some(start) = start {
                let part = &body[start..offset];
                let part = part.strip_suffix('\n').unwrap_or(part);
                parts.push(part.strip_suffix('\r').unwrap_or(part));
            }
            if rest == "--" {
                return parts;
            }
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    if let Some(start) = start {
        // No closing delimiter: take what there is.
        parts.push(&body[start..]);
    }
    parts
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable decoding (RFC 2045 6.7): `=XX` escapes and `=` soft line breaks;
/// malformed escapes are kept as they are.
fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'=' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        // Soft line break: `=` then optional trailing whitespace then CRLF or LF.
        let ws = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if rest[ws..].starts_with(b"\r\n") {
            i += 1 + ws + 2;
        } else if rest[ws..].starts_with(b"\n") {
            i += 1 + ws + 1;
        } else if let [hi, lo, ..] = rest
            && let (Some(hi), Some(lo)) = (hex_value(*hi), hex_value(*lo))
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

/// Base64 decoding that skips whitespace and anything outside the alphabet.
fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in input {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes RFC 2047 encoded-words (`=?charset?B|Q?text?=`), dropping the whitespace
/// between adjacent ones. The decoded bytes are read as UTF-8.
fn decode_encoded_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut after_word = false;
    while let Some(at) = rest.find("=?") {
        let (before, candidate) = rest.split_at(at);
        match parse_encoded_word(candidate) {
            Some((len, decoded)) => {
                if !(after_word && before.chars().all(char::is_whitespace)) {
                    out.push_str(before);
                }
                out.push_str(&decoded);
                after_word = true;
                rest = &candidate[len..];
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                after_word = false;
                rest = &candidate[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses the encoded-word at the start of `s`: its length and its decoded text.
fn parse_encoded_word(s: &str) -> Option<(usize, String)> {
    let inner = s.strip_prefix("=?")?;
    let (_charset, rest) = inner.split_once('?')?;
    let (encoding, rest) = rest.split_once('?')?;
    let end = rest.find("?=")?;
    let text = &rest[..end];
    if text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => decode_base64(text.as_bytes()),
        "Q" | "q" => decode_quoted_printable(text.replace('_', " ").as_bytes()),
        _ => return None,
    };
    let len = s.len() - rest.len() + end + 2;
    Some((len, String::from_utf8_lossy(&bytes).into_owned()))
}
