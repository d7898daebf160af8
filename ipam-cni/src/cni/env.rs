//! The `CNI_*` environment of an invocation.

use std::fmt;

use ipam_core::{Owner, PodRef};

use super::error::{CniError, Code};

/// A CNI command (`CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Allocate the owner's addresses.
    Add,
    /// Release them.
    Del,
    /// Verify the owner still holds them.
    Check,
    /// Release what stale owners of the network hold (1.1.0).
    Gc,
    /// Say whether an ADD could succeed now (1.1.0).
    Status,
    /// List the supported versions.
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND` (upper case, as the specification writes it).
    pub fn parse(text: &str) -> Option<Command> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// Whether the command acts on one attachment and so needs `CNI_CONTAINERID` and
    /// `CNI_IFNAME`.
    pub fn needs_owner(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }

    /// Whether the command releases addresses (DEL, GC). These read only what releasing
    /// needs, so that a setting gone bad since ADD cannot keep addresses held.
    pub fn is_teardown(self) -> bool {
        matches!(self, Command::Del | Command::Gc)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        })
    }
}

/// What this plugin reads from `CNI_ARGS` (`K=V;K=V`): requested addresses and the Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `IP=`: requested addresses as written (comma-separated values are split).
    pub ips: Vec<String>,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_UID`.
    pub pod_uid: Option<String>,
}

impl CniArgs {
    /// Parses `CNI_ARGS`. Keys this plugin does not use are ignored whether or not
    /// `IgnoreUnknown` is set, as runtimes pass many (e.g. `K8S_POD_INFRA_CONTAINER_ID`).
    ///
    /// ```
    /// use ipam_cni::cni::env::CniArgs;
    /// let a = CniArgs::parse("IgnoreUnknown=1;IP=10.0.0.5,fd00::5;K8S_POD_NAME=web").unwrap();
    /// assert_eq!(a.ips, ["10.0.0.5", "fd00::5"]);
    /// assert_eq!(a.pod_name.as_deref(), Some("web"));
    /// ```
    pub fn parse(text: &str) -> Result<CniArgs, CniError> {
        let mut args = CniArgs::default();
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(CniError::new(
                    Code::BadEnvironment,
                    format!("CNI_ARGS: {pair:?}: is not KEY=VALUE (pairs are separated by ';')"),
                ));
            };
            let value = value.to_owned();
            match key {
                "IP" => args.ips.extend(
                    value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                "K8S_POD_NAMESPACE" => args.pod_namespace = Some(value),
                "K8S_POD_NAME" => args.pod_name = Some(value),
                "K8S_POD_UID" => args.pod_uid = Some(value),
                _ => {}
            }
        }
        args.check_kubernetes_pod()?;
        Ok(args)
    }

    /// A Pod named by namespace and name (what kubelet and CRI runtimes send) must have a
    /// name Kubernetes could give it: the Kubernetes store puts both into the path of its
    /// request for the Pod, and a name with `?`, `#`, `/` or a space would read another
    /// object or none. A name without a namespace (podman) names no Kubernetes Pod and is
    /// recorded as given.
    fn check_kubernetes_pod(&self) -> Result<(), CniError> {
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let (Some(namespace), Some(name)) = (given(&self.pod_namespace), given(&self.pod_name))
        else {
            return Ok(());
        };
        ipam_core::check_dns_label("K8S_POD_NAMESPACE", &namespace)
            .and_then(|()| ipam_core::check_dns_subdomain("K8S_POD_NAME", &name))
            .map_err(|e| {
                CniError::new(
                    Code::BadEnvironment,
                    format!(
                        "CNI_ARGS: {}={:?}: is not a Kubernetes {} name: {}",
                        e.field(),
                        e.value(),
                        if e.field() == "K8S_POD_NAME" {
                            "Pod"
                        } else {
                            "namespace"
                        },
                        e.reason()
                    ),
                )
            })
    }

    /// The Pod, when its name is given, with whatever else of it is given: podman sends
    /// `K8S_POD_NAME` without a namespace, and that name is what an operator looks for.
    pub fn pod(&self) -> Option<PodRef> {
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Some(PodRef {
            namespace: given(&self.pod_namespace),
            name: given(&self.pod_name)?,
            uid: given(&self.pod_uid),
            // Only the Pod itself says (the store's Pod directory, on Kubernetes).
            statefulset: None,
        })
    }
}

/// The environment of one invocation, validated for its command: each command holds the
/// variables it reads, and nothing else. `CNI_NETNS` is read by none (an IPAM plugin never
/// enters the namespace), so it is never required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Environment {
    /// ADD: the attachment, and `CNI_ARGS` (requested addresses, the Pod).
    Add {
        /// `(CNI_CONTAINERID, CNI_IFNAME)`.
        owner: Owner,
        /// `CNI_ARGS`.
        args: CniArgs,
    },
    /// DEL: the attachment only, so that nothing else can keep it from releasing.
    Del {
        /// `(CNI_CONTAINERID, CNI_IFNAME)`.
        owner: Owner,
    },
    /// CHECK: the attachment, and `CNI_ARGS` (the configuration is validated as ADD's is).
    Check {
        /// `(CNI_CONTAINERID, CNI_IFNAME)`.
        owner: Owner,
        /// `CNI_ARGS`.
        args: CniArgs,
    },
    /// GC: nothing from the environment (the attachments to keep are on stdin).
    Gc,
    /// STATUS: `CNI_ARGS` (the configuration is validated as ADD's is).
    Status {
        /// `CNI_ARGS`.
        args: CniArgs,
    },
    /// VERSION: nothing.
    Version,
}

impl Environment {
    /// Reads and validates the environment through `var` (e.g. `std::env::var`). An empty
    /// variable counts as missing.
    ///
    /// ```
    /// use ipam_cni::cni::env::{Command, Environment};
    /// let vars = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")];
    /// let env = Environment::from_vars(|k| {
    ///     vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    /// }).unwrap();
    /// assert_eq!(env.command(), Command::Add);
    /// let Environment::Add { owner, .. } = env else { panic!() };
    /// assert_eq!(owner.to_string(), "c1/eth0");
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Environment, CniError> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let command = match get("CNI_COMMAND") {
            None => {
                return Err(CniError::new(
                    Code::BadEnvironment,
                    "CNI_COMMAND is not set: expected one of ADD, DEL, CHECK, GC, STATUS, VERSION",
                ))
            }
            Some(c) => Command::parse(&c).ok_or_else(|| {
                CniError::new(
                    Code::BadEnvironment,
                    format!(
                        "CNI_COMMAND: {c:?}: unknown command; expected one of ADD, DEL, CHECK, GC, STATUS, VERSION"
                    ),
                )
            })?,
        };
        let owner = || -> Result<Owner, CniError> {
            let missing = |name: &str| {
                CniError::new(
                    Code::BadEnvironment,
                    format!("{name} is not set; {command} needs it"),
                )
            };
            let id = get("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID"))?;
            let ifname = get("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME"))?;
            Owner::new(id, ifname).map_err(|e| {
                let var = if e.field() == "ifname" {
                    "CNI_IFNAME"
                } else {
                    "CNI_CONTAINERID"
                };
                CniError::new(
                    Code::BadEnvironment,
                    format!("{var}: {:?}: {}", e.value(), e.reason()),
                )
            })
        };
        let args = || match get("CNI_ARGS") {
            Some(text) => CniArgs::parse(&text),
            None => Ok(CniArgs::default()),
        };
        // The attachment is checked before CNI_ARGS, as a runtime would fix them.
        Ok(match command {
            Command::Add => {
                let owner = owner()?;
                Environment::Add {
                    owner,
                    args: args()?,
                }
            }
            Command::Del => Environment::Del { owner: owner()? },
            Command::Check => {
                let owner = owner()?;
                Environment::Check {
                    owner,
                    args: args()?,
                }
            }
            Command::Gc => Environment::Gc,
            Command::Status => Environment::Status { args: args()? },
            Command::Version => Environment::Version,
        })
    }

    /// The command.
    pub fn command(&self) -> Command {
        match self {
            Environment::Add { .. } => Command::Add,
            Environment::Del { .. } => Command::Del,
            Environment::Check { .. } => Command::Check,
            Environment::Gc => Command::Gc,
            Environment::Status { .. } => Command::Status,
            Environment::Version => Command::Version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `from_vars` over `vars` and renders the owner or the error (`code: msg`).
    fn check(vars: &[(&str, &str)], expect: &str) {
        let got = match Environment::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }) {
            Ok(env) => {
                let owner = match &env {
                    Environment::Add { owner, .. }
                    | Environment::Del { owner }
                    | Environment::Check { owner, .. } => owner.to_string(),
                    _ => String::new(),
                };
                format!("{} {owner}", env.command())
            }
            Err(e) => format!("{}: {}", e.code(), e.msg()),
        };
        assert_eq!(got, expect, "{vars:?}");
    }

    #[test]
    fn environment_is_validated_per_command() {
        let add = ("CNI_COMMAND", "ADD");
        let id = ("CNI_CONTAINERID", "abc-1.2_3");
        let ifname = ("CNI_IFNAME", "eth0");
        check(&[add, id, ifname], "ADD abc-1.2_3/eth0");
        check(&[("CNI_COMMAND", "GC")], "GC ");
        check(&[("CNI_COMMAND", "STATUS")], "STATUS ");
        check(
            &[],
            "4: CNI_COMMAND is not set: expected one of ADD, DEL, CHECK, GC, STATUS, VERSION",
        );
        check(
            &[("CNI_COMMAND", "add"), id, ifname],
            r#"4: CNI_COMMAND: "add": unknown command; expected one of ADD, DEL, CHECK, GC, STATUS, VERSION"#,
        );
        check(
            &[add, ifname],
            "4: CNI_CONTAINERID is not set; ADD needs it",
        );
        check(
            &[("CNI_COMMAND", "DEL"), id],
            "4: CNI_IFNAME is not set; DEL needs it",
        );
        check(
            &[add, ("CNI_CONTAINERID", "../etc"), ifname],
            r#"4: CNI_CONTAINERID: "../etc": must be 1-256 characters of letters, digits, '-', '.' or '_', and not '.' or '..'"#,
        );
        check(
            &[add, ("CNI_CONTAINERID", ".."), ifname],
            r#"4: CNI_CONTAINERID: "..": must be 1-256 characters of letters, digits, '-', '.' or '_', and not '.' or '..'"#,
        );
        check(
            &[add, ("CNI_CONTAINERID", "a/b"), ifname],
            r#"4: CNI_CONTAINERID: "a/b": must be 1-256 characters of letters, digits, '-', '.' or '_', and not '.' or '..'"#,
        );
        check(
            &[add, id, ("CNI_IFNAME", "eth0/1")],
            r#"4: CNI_IFNAME: "eth0/1": must be 1-15 bytes without '/', ':' or white space, and not '.' or '..'"#,
        );
        check(
            &[add, id, ifname, ("CNI_ARGS", "IP=10.0.0.1;garbage")],
            r#"4: CNI_ARGS: "garbage": is not KEY=VALUE (pairs are separated by ';')"#,
        );
        // Tear-down does not read CNI_ARGS, so a malformed one cannot keep it from releasing.
        check(
            &[("CNI_COMMAND", "DEL"), id, ifname, ("CNI_ARGS", "garbage")],
            "DEL abc-1.2_3/eth0",
        );
    }

    #[test]
    fn cni_args_give_ips_and_pod() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_UID=u1;IP=10.0.0.5,10.1.0.5;X=1",
        )
        .unwrap();
        assert_eq!(a.ips, ["10.0.0.5", "10.1.0.5"]);
        let pod = a.pod().unwrap();
        assert_eq!(
            (
                pod.namespace.as_deref(),
                pod.name.as_str(),
                pod.uid.as_deref()
            ),
            (Some("ns"), "web-0", Some("u1"))
        );
        // What podman sends: a name without a namespace is recorded as given.
        assert_eq!(
            CniArgs::parse("K8S_POD_NAME=x").unwrap().pod(),
            Some(PodRef {
                namespace: None,
                name: "x".into(),
                uid: None,
                statefulset: None,
            })
        );
        assert_eq!(CniArgs::parse("K8S_POD_NAMESPACE=ns").unwrap().pod(), None);
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    /// A Pod given by namespace and name must be one Kubernetes could have: otherwise its
    /// name would change the path of the Kubernetes store's request (`p-good?x=1` read Pod
    /// `p-good`). Code 4, naming the variable and the value.
    #[test]
    fn a_pod_kubernetes_could_not_have_is_a_bad_environment() {
        let refused = |args: &str| match CniArgs::parse(args) {
            Ok(a) => panic!("{args:?} accepted: {a:?}"),
            Err(e) => format!("{}: {}", e.code(), e.msg()),
        };
        assert_eq!(
            refused("K8S_POD_NAMESPACE=apps;K8S_POD_NAME=p-good?x=1"),
            r#"4: CNI_ARGS: K8S_POD_NAME="p-good?x=1": is not a Kubernetes Pod name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"#
        );
        for name in ["p#frag", "p good", "../secrets/x", "p%2Fx", "Web"] {
            let msg = refused(&format!("K8S_POD_NAMESPACE=apps;K8S_POD_NAME={name}"));
            assert!(
                msg.starts_with(&format!("4: CNI_ARGS: K8S_POD_NAME={name:?}: ")),
                "{msg}"
            );
        }
        assert_eq!(
            refused(&format!("K8S_POD_NAMESPACE=apps;K8S_POD_NAME={}", "p".repeat(254))),
            format!(
                "4: CNI_ARGS: K8S_POD_NAME={:?}: is not a Kubernetes Pod name: must be no more than 253 characters (it has 254)",
                "p".repeat(254)
            )
        );
        assert!(
            refused("K8S_POD_NAMESPACE=a/b;K8S_POD_NAME=web").starts_with(
                r#"4: CNI_ARGS: K8S_POD_NAMESPACE="a/b": is not a Kubernetes namespace name: "#
            )
        );
        // The longest names Kubernetes allows pass.
        let longest = format!(
            "K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
            "n".repeat(63),
            "p".repeat(253)
        );
        assert!(CniArgs::parse(&longest).is_ok());
        // podman's name without a namespace is no Kubernetes Pod: recorded as given.
        let podman = CniArgs::parse("K8S_POD_NAME=My Pod?").unwrap();
        assert_eq!(podman.pod().unwrap().name, "My Pod?");
    }
}
