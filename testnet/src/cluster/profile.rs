//! Host profiles: what each testnet node offers, set with `degroup capacity set` as an operator
//! would. The `mixed` profile gives a small European federation: varied countries,
//! certifications, prices, capacities and GPUs, so that discovery has something to choose from.

use std::path::Path;

use super::Node;

/// What one host offers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Host {
    /// Node name (and data directory).
    pub name: &'static str,
    pub country: &'static str,
    pub region: &'static str,
    pub operator: &'static str,
    pub certs: &'static [&'static str],
    pub cpu: &'static str,
    pub mem: &'static str,
    pub disk: &'static str,
    pub gpus: &'static [&'static str],
    /// `resource=EUR` per unit-hour.
    pub prices: &'static [&'static str],
}

/// The `mixed` profile, in node order; a testnet larger than this repeats it with numbered
/// names.
pub(crate) const MIXED: &[Host] = &[
    Host {
        name: "paris",
        country: "FR",
        region: "Île-de-France",
        operator: "Cloud Souverain Paris SAS",
        certs: &["SecNumCloud", "ISO27001", "HDS"],
        cpu: "32",
        mem: "128GiB",
        disk: "4TiB",
        gpus: &[],
        prices: &["cpu=0.031", "mem=0.004", "disk=0.0001"],
    },
    Host {
        name: "frankfurt",
        country: "DE",
        region: "Hessen",
        operator: "Rechenzentrum Rhein-Main GmbH",
        certs: &["C5", "ISO27001"],
        cpu: "64",
        mem: "256GiB",
        disk: "8TiB",
        gpus: &["2xL4:24GiB"],
        prices: &["cpu=0.026", "mem=0.0035", "gpu=1.8"],
    },
    Host {
        name: "toulouse",
        country: "FR",
        region: "Occitanie",
        operator: "Hébergement Coopératif Toulouse SCOP",
        certs: &["ISO27001"],
        cpu: "16",
        mem: "64GiB",
        disk: "2TiB",
        gpus: &[],
        prices: &["cpu=0.018", "mem=0.003"],
    },
    Host {
        name: "lyon",
        country: "FR",
        region: "Auvergne-Rhône-Alpes",
        operator: "Centre de Calcul Public de Lyon",
        certs: &["SecNumCloud", "ISO27001"],
        cpu: "48",
        mem: "192GiB",
        disk: "6TiB",
        gpus: &["1xH100:80GiB"],
        prices: &["cpu=0.024", "mem=0.0038", "gpu=3.2"],
    },
    Host {
        name: "amsterdam",
        country: "NL",
        region: "Noord-Holland",
        operator: "Amsterdam Colocatie BV",
        certs: &["ISO27001", "SOC2"],
        cpu: "24",
        mem: "96GiB",
        disk: "3TiB",
        gpus: &[],
        prices: &["cpu=0.021", "mem=0.003"],
    },
    Host {
        name: "milano",
        country: "IT",
        region: "Lombardia",
        operator: "Calcolo Lombardo Srl",
        certs: &["ISO27001"],
        cpu: "16",
        mem: "64GiB",
        disk: "2TiB",
        gpus: &[],
        prices: &["cpu=0.02", "mem=0.0032"],
    },
    Host {
        name: "warsaw",
        country: "PL",
        region: "Mazowieckie",
        operator: "Warszawskie Centrum Danych sp. z o.o.",
        certs: &["ISO27001"],
        cpu: "32",
        mem: "128GiB",
        disk: "4TiB",
        gpus: &["4xL40S:48GiB"],
        prices: &["cpu=0.017", "mem=0.0025", "gpu=1.4"],
    },
    Host {
        name: "tallinn",
        country: "EE",
        region: "Harjumaa",
        operator: "Põhja Andmekeskus OÜ",
        certs: &[],
        cpu: "8",
        mem: "32GiB",
        disk: "1TiB",
        gpus: &[],
        prices: &["cpu=0.015", "mem=0.002"],
    },
];

/// Node names for `n` hosts of the mixed profile.
pub(crate) fn mixed_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let base = MIXED[i % MIXED.len()].name;
            match i / MIXED.len() {
                0 => base.to_owned(),
                round => format!("{base}{round}"),
            }
        })
        .collect()
}

/// The profile of mixed host `i`.
pub(crate) fn mixed(i: usize) -> &'static Host {
    &MIXED[i % MIXED.len()]
}

impl Host {
    /// The `degroup capacity set` arguments for this host.
    pub(crate) fn capacity_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "capacity",
            "set",
            "--cpu",
            self.cpu,
            "--mem",
            self.mem,
            "--disk",
            self.disk,
            "--country",
            self.country,
            "--region",
            self.region,
            "--operator",
            self.operator,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for c in self.certs {
            args.extend(["--cert".to_owned(), (*c).to_owned()]);
        }
        if self.certs.is_empty() {
            args.push("--no-certs".to_owned());
        }
        for g in self.gpus {
            args.extend(["--gpu".to_owned(), (*g).to_owned()]);
        }
        if self.gpus.is_empty() {
            args.push("--no-gpu".to_owned());
        }
        for p in self.prices {
            args.extend(["--price".to_owned(), (*p).to_owned()]);
        }
        // The testnet's hosts share one small machine; their offers are what they would be.
        args.push("--force".to_owned());
        args
    }

    /// Applies this profile to `node` with `degroup capacity set`.
    pub(crate) async fn apply(&self, bin: &Path, node: &Node) -> anyhow::Result<()> {
        let args = self.capacity_args();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        node.cli(bin, &refs).await.map(|_| ())
    }

    /// The command line, for people.
    pub(crate) fn command_line(&self, data_dir: &Path) -> String {
        let args: Vec<String> = self
            .capacity_args()
            .into_iter()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect();
        format!(
            "degroup --data-dir {} {}",
            data_dir.display(),
            args.join(" ")
        )
    }
}
