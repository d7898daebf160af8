//! The CNI specification versions this plugin speaks.

use std::fmt;

use super::env::Command;

/// A supported `cniVersion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// 0.3.0
    V0_3_0,
    /// 0.3.1
    V0_3_1,
    /// 0.4.0: adds CHECK.
    V0_4_0,
    /// 1.0.0: drops `ips[].version`.
    V1_0_0,
    /// 1.1.0: adds GC and STATUS.
    V1_1_0,
}

impl CniVersion {
    /// Every supported version, oldest first, as VERSION lists them.
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The newest version, used for VERSION and for errors about requests whose version is
    /// not understood.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    /// Parses a version string exactly as written in a configuration.
    ///
    /// ```
    /// use ipam_cni::cni::version::CniVersion;
    /// assert_eq!(CniVersion::parse("0.4.0"), Some(CniVersion::V0_4_0));
    /// assert_eq!(CniVersion::parse("0.2.0"), None);
    /// ```
    pub fn parse(text: &str) -> Option<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// The version as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Whether results carry `ips[].version` ("4" or "6"): 0.3.x and 0.4.0 do.
    pub fn has_ip_version_field(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// The oldest version that has `command`, if it is newer than 0.3.0.
    pub fn first_with(command: Command) -> CniVersion {
        match command {
            Command::Check => CniVersion::V0_4_0,
            Command::Gc | Command::Status => CniVersion::V1_1_0,
            Command::Add | Command::Del | Command::Version => CniVersion::V0_3_0,
        }
    }

    /// Whether the specification at this version has `command` (as libcni's skel decides).
    pub fn allows(self, command: Command) -> bool {
        self >= CniVersion::first_with(command)
    }
}

impl serde::Serialize for CniVersion {
    /// As written in configurations and results: `"1.0.0"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_gate_commands() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()), Some(v));
        }
        for bad in ["", "1.0", "0.2.0", "1.2.0", " 1.0.0", "v1.0.0"] {
            assert_eq!(CniVersion::parse(bad), None, "{bad:?}");
        }
        assert!(!CniVersion::V0_3_1.allows(Command::Check));
        assert!(CniVersion::V0_4_0.allows(Command::Check));
        assert!(!CniVersion::V1_0_0.allows(Command::Gc));
        assert!(CniVersion::V1_1_0.allows(Command::Status));
        assert!(CniVersion::V0_4_0.has_ip_version_field());
        assert!(!CniVersion::V1_0_0.has_ip_version_field());
    }
}
