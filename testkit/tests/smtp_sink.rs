//! The SMTP sink against a real client (lettre) and against raw SMTP over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use testkit::smtp::{ReceivedMessage, SmtpSink};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const WAIT: Duration = Duration::from_secs(10);

fn mailbox(s: &str) -> Mailbox {
    s.parse().unwrap()
}

#[tokio::test]
async fn lettre_delivers_plain_and_multipart_messages() {
    let sink = SmtpSink::start().await.unwrap();
    assert_eq!(sink.url(), format!("smtp://127.0.0.1:{}", sink.port()));

    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port())
        .build();

    let welcome = Message::builder()
        .from(mailbox("Hashgrid <noreply@hashgrid.test>"))
        .to(mailbox("Alice <alice@example.test>"))
        .cc(mailbox("bob@example.test"))
        .subject("Welcome to Hashgrid")
        .header(ContentType::TEXT_PLAIN)
        .body(String::from("Hello Alice,\nyour account is ready.\n"))
        .unwrap();
    mailer.send(welcome).await.unwrap();

    // A long link, so quoted-printable wraps it.
    let link = format!(
        "https://app.hashgrid.test/account/confirm-email-address-for-new-account/{}?utm_source=email&token=abc_DEF-123",
        "x".repeat(47)
    );
    let subject =
        "Confirm your Hashgrid account: a long subject line that needs folding — ça marche";
    let confirm = Message::builder()
        .from(mailbox("Hashgrid <noreply@hashgrid.test>"))
        .to(mailbox("carol@example.test"))
        .subject(subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(format!(
                    "Confirm your address by opening this link:\n{link}\n"
                )))
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .header(ContentTransferEncoding::QuotedPrintable)
                        .body(format!(
                            "<p>Confirm your address: <a href=\"{link}\">confirm</a></p>"
                        )),
                ),
        )
        .unwrap();
    mailer.send(confirm).await.unwrap();

    let messages = sink.wait_for(2, WAIT).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(sink.messages(), messages);

    let first = &messages[0];
    assert_eq!(first.from, "noreply@hashgrid.test");
    assert_eq!(first.to, ["alice@example.test", "bob@example.test"]);
    assert_eq!(first.subject().as_deref(), Some("Welcome to Hashgrid"));
    assert!(first.body_contains("your account is ready."));
    assert_eq!(first.find_token(), None);

    let second = &messages[1];
    assert_eq!(second.from, "noreply@hashgrid.test");
    assert_eq!(second.to, ["carol@example.test"]);
    assert_eq!(second.subject().as_deref(), Some(subject));
    // Both parts are quoted-printable: `=` is sent as `=3D` and long lines are wrapped
    // with soft line breaks (with this padding one falls inside the plain part's token).
    assert!(second.data.contains("=\r\n"), "{}", second.data);
    assert!(
        !second.data.contains("token=abc_DEF-123"),
        "{}",
        second.data
    );
    assert!(second.body_contains(&link), "{}", second.decoded_body());
    assert!(second.body_contains("<a href="));
    assert_eq!(second.find_token().as_deref(), Some("abc_DEF-123"));
}

#[tokio::test]
async fn concurrent_lettre_clients_are_all_served() {
    let sink = SmtpSink::start().await.unwrap();
    let mut sends = Vec::new();
    for i in 0..8 {
        let port = sink.port();
        sends.push(tokio::spawn(async move {
            let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(port)
                .build();
            let message = Message::builder()
                .from(mailbox("noreply@hashgrid.test"))
                .to(mailbox(&format!("user{i}@example.test")))
                .subject(format!("message {i}"))
                .body(format!("token=t{i}\n"))
                .unwrap();
            mailer.send(message).await.unwrap();
        }));
    }
    for send in sends {
        send.await.unwrap();
    }
    let messages = sink.wait_for(8, WAIT).await.unwrap();
    let mut tokens: Vec<String> = messages.iter().filter_map(|m| m.find_token()).collect();
    tokens.sort();
    let expected: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    assert_eq!(tokens, expected);
}

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(sink: &SmtpSink) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", sink.port()))
            .await
            .unwrap();
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
        };
        let (code, _) = client.reply().await;
        assert_eq!(code, 220);
        client
    }

    async fn send(&mut self, raw: &str) {
        self.writer.write_all(raw.as_bytes()).await.unwrap();
    }

    /// Reads one (possibly multi-line) reply: its code and its lines' text.
    async fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed before a reply");
            assert!(
                line.ends_with("\r\n"),
                "reply line not ended by CRLF: {line:?}"
            );
            let code: u16 = line[..3].parse().unwrap();
            let more = line.as_bytes()[3] == b'-';
            lines.push(line[4..].trim_end().to_owned());
            if !more {
                return (code, lines);
            }
        }
    }

    async fn command(&mut self, command: &str) -> (u16, Vec<String>) {
        self.send(&format!("{command}\r\n")).await;
        self.reply().await
    }

    async fn code(&mut self, command: &str) -> u16 {
        self.command(command).await.0
    }
}

#[tokio::test]
async fn raw_client_gets_dot_stuffed_lines_unstuffed_and_can_pipeline() {
    let sink = SmtpSink::start().await.unwrap();
    let mut client = Client::connect(&sink).await;

    let (code, lines) = client.command("EHLO client.test").await;
    assert_eq!(code, 250);
    for extension in ["8BITMIME", "SMTPUTF8", "PIPELINING"] {
        assert!(
            lines.iter().any(|l| l == extension),
            "{extension} missing: {lines:?}"
        );
    }

    assert_eq!(
        client
            .code("MAIL FROM:<sender@example.test> BODY=8BITMIME")
            .await,
        250
    );
    assert_eq!(client.code("RCPT TO:<one@example.test>").await, 250);
    assert_eq!(client.code("rcpt to: <two@example.test>").await, 250);
    assert_eq!(client.code("DATA").await, 354);
    client
        .send("Subject: dots\r\n\r\nfirst line\r\n..leading dot\r\n...two dots\r\n.\r\n")
        .await;
    assert_eq!(client.reply().await.0, 250);

    // A second message on the same connection, pipelined in one write.
    client
        .send(
            "MAIL FROM:<>\r\nRCPT TO:<three@example.test>\r\nDATA\r\n\
             Subject: second\r\n\r\ntoken=zz9\r\n.\r\nNOOP\r\n",
        )
        .await;
    assert_eq!(client.reply().await.0, 250);
    assert_eq!(client.reply().await.0, 250);
    assert_eq!(client.reply().await.0, 354);
    assert_eq!(client.reply().await.0, 250);
    assert_eq!(client.reply().await.0, 250);

    // RSET drops a transaction in progress.
    assert_eq!(client.code("MAIL FROM:<dropped@example.test>").await, 250);
    assert_eq!(client.code("RSET").await, 250);
    assert_eq!(client.code("RCPT TO:<x@example.test>").await, 503);
    assert_eq!(client.code("QUIT").await, 221);

    let messages = sink.wait_for(2, WAIT).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0],
        ReceivedMessage {
            from: "sender@example.test".into(),
            to: vec!["one@example.test".into(), "two@example.test".into()],
            data: "Subject: dots\r\n\r\nfirst line\r\n.leading dot\r\n..two dots\r\n".into(),
        }
    );
    assert_eq!(messages[0].subject().as_deref(), Some("dots"));
    assert!(messages[0].body_contains("\r\n.leading dot\r\n"));
    assert!(!messages[0].body_contains("..leading"));
    assert_eq!(messages[1].from, "");
    assert_eq!(messages[1].to, ["three@example.test"]);
    assert_eq!(messages[1].find_token().as_deref(), Some("zz9"));
}

#[tokio::test]
async fn unknown_command_gets_502_and_the_session_goes_on() {
    let sink = SmtpSink::start().await.unwrap();
    let mut client = Client::connect(&sink).await;
    assert_eq!(client.code("FROB the widget").await, 502);
    assert_eq!(client.code("STARTTLS").await, 502);
    assert_eq!(client.code("NOOP").await, 250);
    assert_eq!(client.code("HELO client.test").await, 250);
    assert_eq!(client.code("QUIT").await, 221);
}

#[tokio::test]
async fn commands_out_of_sequence_get_503() {
    let sink = SmtpSink::start().await.unwrap();
    let mut client = Client::connect(&sink).await;
    assert_eq!(client.code("MAIL FROM:<a@example.test>").await, 503);
    assert_eq!(client.code("EHLO client.test").await, 250);
    assert_eq!(client.code("RCPT TO:<b@example.test>").await, 503);
    assert_eq!(client.code("DATA").await, 503);
    assert_eq!(client.code("MAIL FROM:<a@example.test>").await, 250);
    assert_eq!(client.code("MAIL FROM:<a@example.test>").await, 503);
    assert_eq!(client.code("DATA").await, 503);
    assert_eq!(client.code("MAIL FROM a@example.test").await, 503);
    assert_eq!(client.code("RCPT TO:b@example.test").await, 501);
    assert_eq!(client.code("QUIT").await, 221);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn wait_for_times_out_saying_how_many_arrived() {
    let sink = SmtpSink::start().await.unwrap();
    let error = sink
        .wait_for(1, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("0 arrived"), "{error}");
}

#[tokio::test]
async fn dropping_the_sink_stops_it() {
    let sink = SmtpSink::start().await.unwrap();
    let port = sink.port();
    let mut client = Client::connect(&sink).await;
    drop(sink);

    // The open connection is closed...
    let mut line = String::new();
    let n = tokio::time::timeout(WAIT, client.reader.read_line(&mut line))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "expected EOF, got {line:?}");

    // ...and new ones are refused once the listener is gone.
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn find_token_decodes_quoted_printable_soft_breaks() {
    let message = ReceivedMessage {
        from: "a@example.test".into(),
        to: vec!["b@example.test".into()],
        data: "Subject: =?utf-8?q?caf=C3=A9?= =?utf-8?b?IOKAlCBvaw==?=\r\n\
               \x20and more\r\n\
               MIME-Version: 1.0\r\n\
               Content-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n\
               \r\n\
               --b1\r\n\
               Content-Type: text/plain; charset=utf-8\r\n\
               Content-Transfer-Encoding: quoted-printable\r\n\
               \r\n\
               https://x.test/confirm?tok=\r\nen=3Dab_C=\r\nD-9&next=3D1\r\n\
               --b1\r\n\
               Content-Type: text/html; charset=utf-8\r\n\
               Content-Transfer-Encoding: base64\r\n\
               \r\n\
               PGEgaHJlZj0iP3Rva2VuPWh0bWwiPg==\r\n\
               --b1--\r\n"
            .into(),
    };
    assert_eq!(message.subject().as_deref(), Some("café — ok and more"));
    assert_eq!(message.find_token().as_deref(), Some("ab_CD-9"));
    assert!(message.body_contains("<a href=\"?token=html\">"));
    assert_eq!(
        message.header("content-type").as_deref(),
        Some("multipart/alternative; boundary=\"b1\"")
    );
}
