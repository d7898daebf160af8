//! The conversation between the plugin and the node agent (`ipam-agent`) on its unix
//! socket: the plugin sends the whole invocation, the agent runs it with the plugin's own
//! code ([`execute_and_answer`](super::execute_and_answer)) on a store it keeps open, and
//! the plugin prints the answer and exits with its status. What the runtime sees is what
//! the direct path would have given, byte for byte.
//!
//! One JSON document per line, in this order:
//! 1. plugin → agent: [`Request`] (the versions, the environment, stdin);
//! 2. agent → plugin: [`Reply`], an answer (stdout, stderr, exit status) or a refusal
//!    before anything was done (another store, another version);
//! 3. plugin → agent: [`Delivery`], whether the answer reached stdout. An ADD whose result
//!    could not be written gives back what it took, as on the direct path, and a last
//!    answer (its failure) follows.
//!
//! The plugin does the call itself when the socket is absent, refuses the connection,
//! closes it early, refuses the request or does not answer in time ([`NotAnswered`]). That
//! is safe because both paths compare and swap on the store: an ADD repeated by the plugin
//! after an agent died in the middle of it finds the addresses the agent took, or none.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Output;

/// The version of this conversation; a plugin and an agent speaking different ones refuse
/// each other.
pub const PROTOCOL: u32 = 1;

/// This build's version: the plugin and the agent must be of the same release, since the
/// agent runs the plugin's code for it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The variables of an invocation that the plugin reads, which travel with it.
pub const FORWARDED: [&str; 9] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "IPAM_CNI_LOG",
    "IPAM_CNI_LOG_FILE",
    "IPAM_CNI_LOCK_WAIT_MS",
];

/// How long the agent has to answer beyond the call's own bound (the lock wait), before
/// the plugin does the call itself.
pub const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// How long the agent waits for the plugin to say whether its answer was delivered; no word
/// counts as delivered, as a plugin killed after writing its output has delivered it.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(5);

/// An invocation, as the plugin sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// [`PROTOCOL`] of the sender.
    pub protocol: u32,
    /// [`VERSION`] of the sender.
    pub version: String,
    /// The [`FORWARDED`] variables that are set.
    pub env: BTreeMap<String, String>,
    /// stdin, as read (the plugin sends only what it could decode as JSON, so it is text).
    pub stdin: String,
}

impl Request {
    /// The variable `name`, as the plugin saw it.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    /// Why the agent must not serve this plugin, if it must not.
    pub fn mismatch(&self) -> Option<String> {
        (self.protocol != PROTOCOL || self.version != VERSION).then(|| {
            format!(
                "ipam-agent {VERSION} (protocol {PROTOCOL}) does not serve ipam-cni {} \
                 (protocol {}): install the plugin and the agent of one release",
                self.version, self.protocol
            )
        })
    }
}

/// What the agent sends back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Reply {
    /// The call was made: print this and exit with its status.
    Answer {
        /// [`VERSION`] of the agent.
        version: String,
        /// What the plugin prints on stdout.
        stdout: String,
        /// What the plugin writes on stderr (the call's log lines, when they go there).
        stderr: String,
        /// The plugin's exit status.
        exit_code: i32,
    },
    /// Nothing was done, for this reason: the plugin does the call itself.
    Refused {
        /// [`VERSION`] of the agent.
        version: String,
        /// Why, as a log line says it.
        why: String,
    },
}

/// Whether the plugin got the answer out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `None`: delivered; else why not (stdout closed, full).
    pub failed: Option<String>,
}

/// Why the plugin did not get an answer from the agent.
#[derive(Debug)]
pub enum NotAnswered {
    /// No socket at the path (no agent on this node).
    Absent,
    /// The socket refused the connection or the request (no agent behind it, or one
    /// stopping).
    Unreachable(std::io::Error),
    /// The agent closed the connection or did not answer in time.
    Silent(String),
    /// The agent refused the request (another store, another release).
    Refused(String),
}

impl fmt::Display for NotAnswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotAnswered::Absent => f.write_str("does not exist"),
            NotAnswered::Unreachable(e) => write!(f, "cannot be reached: {e}"),
            NotAnswered::Silent(why) => write!(f, "gave no answer: {why}"),
            NotAnswered::Refused(why) => write!(f, "refused the call: {why}"),
        }
    }
}

/// Asks the agent at `socket` to run the invocation (`var`, `stdin`), prints its answer on
/// `stdout` (and its log lines on stderr) and returns the exit status; or says why there
/// was no answer, having printed nothing. `wait` is the call's lock wait: the agent has
/// that and [`ANSWER_GRACE`] to answer.
pub fn ask(
    socket: &Path,
    var: &impl Fn(&str) -> Option<String>,
    stdin: &[u8],
    wait: Duration,
    stdout: &mut impl Write,
) -> Result<i32, NotAnswered> {
    // `exists` follows the link: a socket is there only if something is behind its name.
    if std::fs::symlink_metadata(socket).is_err() {
        return Err(NotAnswered::Absent);
    }
    let stream = UnixStream::connect(socket).map_err(NotAnswered::Unreachable)?;
    let request = Request {
        protocol: PROTOCOL,
        version: VERSION.to_owned(),
        env: FORWARDED
            .iter()
            .filter_map(|k| var(k).map(|v| ((*k).to_owned(), v)))
            .collect(),
        // Only decodable requests come here, and JSON is text.
        stdin: String::from_utf8_lossy(stdin).into_owned(),
    };
    let answer_wait = wait + ANSWER_GRACE;
    stream
        .set_read_timeout(Some(answer_wait))
        .and_then(|()| stream.set_write_timeout(Some(ANSWER_GRACE)))
        .map_err(NotAnswered::Unreachable)?;
    let mut writer = &stream;
    send(&mut writer, &request).map_err(NotAnswered::Unreachable)?;
    let mut reader = BufReader::new(&stream);
    // The status of an answer already received (at least 1: it could not be delivered).
    let mut answered: Option<i32> = None;
    loop {
        let reply = match receive::<Reply>(&mut reader) {
            Ok(Some(reply)) => reply,
            // After a first answer, a closed connection is the end of the conversation.
            Ok(None) if answered.is_some() => return Ok(answered.unwrap_or(1)),
            Ok(None) => return Err(NotAnswered::Silent("it closed the connection".to_owned())),
            Err(e) if answered.is_some() => {
                ::log::warn!("the agent at {}: {e}", socket.display());
                return Ok(answered.unwrap_or(1));
            }
            Err(e) if is_timeout(&e) => {
                return Err(NotAnswered::Silent(format!(
                    "none within {} s",
                    answer_wait.as_secs()
                )))
            }
            Err(e) => return Err(NotAnswered::Silent(e.to_string())),
        };
        let (out, err, exit_code) = match reply {
            Reply::Refused { why, .. } => return Err(NotAnswered::Refused(why)),
            Reply::Answer {
                stdout: out,
                stderr: err,
                exit_code,
                ..
            } => (out, err, exit_code),
        };
        let _ = std::io::stderr().write_all(err.as_bytes());
        let written = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush());
        let delivery = Delivery {
            failed: written.as_ref().err().map(ToString::to_string),
        };
        if written.is_ok() {
            // The agent waits for this word only for an ADD's sake; a lost one counts as
            // delivered.
            let _ = send(&mut writer, &delivery);
            return Ok(exit_code);
        }
        answered = Some(exit_code.max(1));
        if send(&mut writer, &delivery).is_err() {
            return Ok(exit_code.max(1));
        }
    }
}

/// Reads a plugin's request on the agent's side; `None` when the plugin closed the
/// connection without one.
pub fn read_request(stream: &UnixStream) -> std::io::Result<Option<Request>> {
    receive::<Request>(&mut BufReader::new(stream))
}

/// Answers `request` on the agent's side: refuses a plugin of another release, else has
/// `answer` run it with a [`Deliverer`] for its output, and refuses the request when
/// `answer` says why it must not run it (another store).
pub fn serve_request(
    stream: &UnixStream,
    request: Request,
    answer: impl FnOnce(Request, &mut Deliverer<'_>) -> Result<(), String>,
) -> std::io::Result<()> {
    let mut deliverer = Deliverer {
        stream,
        reader: BufReader::new(stream),
        stderr: String::new(),
        last: None,
        undelivered: 0,
    };
    if let Some(why) = request.mismatch() {
        return deliverer.refuse(why);
    }
    if let Err(why) = answer(request, &mut deliverer) {
        return deliverer.refuse(why);
    }
    Ok(())
}

/// The agent's end of one conversation, handed to the code that runs the call.
pub struct Deliverer<'a> {
    stream: &'a UnixStream,
    reader: BufReader<&'a UnixStream>,
    /// The call's stderr lines, sent with the next answer.
    pub stderr: String,
    last: Option<(i32, String)>,
    undelivered: u32,
}

impl Deliverer<'_> {
    /// Sends `out` (with [`Deliverer::stderr`]) and waits up to [`DELIVERY_WAIT`] for the
    /// plugin's word: an error when it says it could not write it.
    pub fn deliver(&mut self, out: &Output) -> std::io::Result<()> {
        let reply = Reply::Answer {
            version: VERSION.to_owned(),
            stdout: out.stdout.clone(),
            stderr: std::mem::take(&mut self.stderr),
            exit_code: out.exit_code,
        };
        self.last = Some((out.exit_code, out.stdout.clone()));
        let delivered = self.send_answer(&reply);
        if delivered.is_err() {
            self.undelivered += 1;
        }
        delivered
    }

    fn send_answer(&mut self, reply: &Reply) -> std::io::Result<()> {
        let mut writer = self.stream;
        send(&mut writer, reply)?;
        self.stream.set_read_timeout(Some(DELIVERY_WAIT))?;
        match receive::<Delivery>(&mut self.reader) {
            Ok(Some(Delivery { failed: Some(why) })) => Err(std::io::Error::other(why)),
            // Delivered, or no word (a plugin killed after writing has delivered).
            _ => Ok(()),
        }
    }

    /// The exit status and stdout of the last answer sent, if one was.
    pub fn last_answer(&self) -> Option<(i32, &str)> {
        self.last
            .as_ref()
            .map(|(code, stdout)| (*code, stdout.as_str()))
    }

    /// How many answers the plugin did not take (it was gone, or said it could not write
    /// them).
    pub fn undelivered(&self) -> u32 {
        self.undelivered
    }

    /// Refuses the request: the plugin does the call itself.
    pub fn refuse(&mut self, why: String) -> std::io::Result<()> {
        let mut writer = self.stream;
        send(
            &mut writer,
            &Reply::Refused {
                version: VERSION.to_owned(),
                why,
            },
        )
    }
}

fn send(writer: &mut impl Write, message: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line)?;
    writer.flush()
}

/// The next message, `None` at the end of the stream.
fn receive<T: serde::de::DeserializeOwned>(
    reader: &mut impl BufRead,
) -> std::io::Result<Option<T>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_of_another_release_is_refused_by_name() {
        let mut request = Request {
            protocol: PROTOCOL,
            version: VERSION.to_owned(),
            env: BTreeMap::new(),
            stdin: String::new(),
        };
        assert_eq!(request.mismatch(), None);
        request.version = "0.0.1".to_owned();
        assert_eq!(
            request.mismatch().unwrap(),
            format!(
                "ipam-agent {VERSION} (protocol 1) does not serve ipam-cni 0.0.1 (protocol 1): \
                 install the plugin and the agent of one release"
            )
        );
    }

    #[test]
    fn replies_are_one_line_of_tagged_json() {
        let reply = Reply::Answer {
            version: "0.1.0".to_owned(),
            stdout: "{}\n".to_owned(),
            stderr: String::new(),
            exit_code: 0,
        };
        let mut line = Vec::new();
        send(&mut line, &reply).unwrap();
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"answer\":{\"version\":\"0.1.0\",\"stdout\":\"{}\\n\",\"stderr\":\"\",\"exitCode\":0}}\n"
        );
        assert_eq!(receive::<Reply>(&mut &line[..]).unwrap(), Some(reply));
        assert_eq!(receive::<Reply>(&mut &b""[..]).unwrap(), None);
    }
}
