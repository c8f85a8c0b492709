//! # degroup-sdk
//!
//! The Rust guest SDK for degroup plugins.
//!
//! A degroup plugin is a WebAssembly component that a tenant deploys onto a slice of hardware it
//! has leased from a host. The host runs it in a sandbox held to the lease and drives it through
//! three calls — `init` once per start, `tick` on a timer, `message` when a message arrives —
//! while the plugin reaches back through the host interfaces: [`lease`] (what it runs on),
//! [`kv`] (a durable key-value store capped at the lease's disk), [`log`](mod@log) (lines
//! behind `degroup logs`), and the tenant's control plane: [`mesh`] (messages between the
//! deployments of the tenant's group, across hosts) and [`workload`] (child components started
//! inside the deployment's own lease). The contract is the WIT package `degroup:plugin@0.1.1`
//! in this crate's `wit/` folder; this crate hides the `wit-bindgen` output behind a small,
//! typed API.
//!
//! A plugin is one `impl` of [`Plugin`] plus one [`export_plugin!`] line:
//!
//! ```no_run
//! use degroup_sdk::{export_plugin, info, kv, warn, Config, Plugin};
//!
//! /// Counts ticks, durably: the count survives restarts and upgrades.
//! struct Counter {
//!     count: u64,
//!     step: u64,
//! }
//!
//! impl Plugin for Counter {
//!     fn init(config: Config) -> Result<Self, String> {
//!         // `?` turns a bad `--config step=...` into an `init` error: the deployment is
//!         // marked failed with that message instead of being restarted over and over.
//!         let step = config.parse_or("step", 1u64)?;
//!         let count = kv::get_json::<u64>("count")?.unwrap_or(0);
//!         info!("counter starts at {count} (step {step})");
//!         Ok(Counter { count, step })
//!     }
//!
//!     fn tick(&mut self, _now_ms: u64) {
//!         self.count += self.step;
//!         match kv::set_json("count", &self.count) {
//!             Ok(()) => info!("count = {}", self.count),
//!             // Refusals (quota, sizes) are values, never traps: decide what to do.
//!             Err(e) => warn!("could not store the count: {e}"),
//!         }
//!     }
//!
//!     fn message(&mut self, from: String, payload: Vec<u8>) {
//!         if payload == b"reset" {
//!             self.count = 0;
//!             if let Err(e) = kv::set_json("count", &0u64) {
//!                 warn!("could not reset (asked by {from}): {e}");
//!             }
//!         }
//!     }
//! }
//!
//! export_plugin!(Counter);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2` (`cargo build --release --target
//! wasm32-wasip2`, or `degroup plugin build`); the `.wasm` that comes out is a component ready
//! for `degroup plugin run` and `degroup deploy`.
//!
//! ## Lifecycle in one paragraph
//!
//! Every start — first deploy, restart after a trap, node restart, upgrade — creates a fresh
//! instance and calls [`Plugin::init`] with the deployment's configuration. Whatever `init`
//! returns is kept in memory and handed to [`Plugin::tick`] and [`Plugin::message`] as
//! `&mut self`. Memory is lost on every restart, so anything that must survive goes into
//! [`kv`]. Returning `Err` from `init` marks the deployment failed at once (use it for bad
//! configuration); a panic is a trap, which the host retries with backoff.
//!
//! ## Off-wasm: unit tests on your machine
//!
//! On targets other than `wasm32` (your laptop running `cargo test`), the SDK does not call a
//! host: [`kv`] is served by an in-memory map with the same limits, [`log`](mod@log) prints to
//! stderr and keeps the lines, [`lease::info`] returns a made-up lease, [`mesh`] has settable
//! members and records every send, and [`workload`] keeps a table of children with a capacity
//! (so `insufficient-capacity` can be tested). The `testing` module (compiled off-wasm only)
//! reads, sets and resets that state, so plugin logic can be tested with plain `#[test]`
//! functions.
//!
//! ## Modules
//!
//! - [`Plugin`], [`export_plugin!`], [`Config`]: writing the plugin.
//! - [`kv`]: the durable store, raw bytes and JSON ([`kv::get_json`], [`kv::set_json`]).
//! - [`log`](mod@log): the macros [`trace!`], [`debug!`], [`info!`], [`warn!`], [`error!`],
//!   [`log!`].
//! - [`lease`]: the lease and deployment the instance runs under.
//! - [`mesh`]: the group's members ([`mesh::members`]) and messages to them ([`mesh::send`],
//!   [`mesh::send_json`], [`mesh::broadcast`]).
//! - [`workload`]: child workloads inside the lease ([`workload::start`], [`workload::stop`],
//!   [`workload::list`], [`workload::status`], [`workload::route`]).
//! - [`time`], [`random`]: wall clock, monotonic clock and random bytes from the host.
//! - [`bindings`]: the raw `wit-bindgen` output, for what the typed API does not cover.

mod config;
mod host;
pub mod kv;
pub mod lease;
pub mod log;
pub mod mesh;
pub mod random;
#[cfg(not(target_family = "wasm"))]
pub mod testing;
pub mod time;
pub mod workload;

pub use config::{Config, ConfigError};
pub use kv::KvError;
pub use lease::{LeaseInfo, Slice};
pub use log::Level;
pub use mesh::{Member, SendError};
pub use workload::{Limits, WorkloadError};

/// The raw bindings that `wit-bindgen` generates for the world `degroup:plugin/plugin`.
///
/// Prefer the typed modules of this crate; these are here for what they do not cover. Types
/// follow the WIT names: `bindings::degroup::plugin::kv::get`, `bindings::Guest` (the three
/// exports), `bindings::wasi::clocks::wall_clock::now`, and so on. The `export!` macro in here
/// is what [`export_plugin!`] expands to; it is public so that other crates can export through
/// this crate's bindings.
#[allow(
    unsafe_code,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic
)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        default_bindings_module: "degroup_sdk::bindings",
        generate_all,
    });
}

/// A degroup plugin: state created by [`init`](Plugin::init) and driven by the host's calls.
///
/// Implement it on the type that holds the plugin's in-memory state and export that type with
/// [`export_plugin!`]. Only `init` is required; `tick` and `message` default to doing nothing.
///
/// Each call runs under a deadline (by default 1 s for `init`, 100 ms for `tick` and
/// `message`) and a fuel budget; a call that runs past either traps and the instance is
/// restarted with backoff. Keep each call short and put long work in steps across ticks.
///
/// ```no_run
/// use degroup_sdk::{export_plugin, info, Config, Plugin};
///
/// struct Hello {
///     name: String,
/// }
///
/// impl Plugin for Hello {
///     fn init(config: Config) -> Result<Self, String> {
///         let name = config.get_or("name", "world").to_string();
///         info!("hello, {name}");
///         Ok(Hello { name })
///     }
///
///     fn tick(&mut self, now_ms: u64) {
///         info!("still here, {} (t = {now_ms})", self.name);
///     }
/// }
///
/// export_plugin!(Hello);
/// ```
pub trait Plugin: Sized + 'static {
    /// Called once per start with the deployment's configuration (`--config k=v`, in the order
    /// given). Read durable state from [`kv`] here.
    ///
    /// Returning `Err(message)` marks the deployment failed with `message`, without retries:
    /// use it for configuration that can never work. [`ConfigError`] and [`KvError`] convert
    /// into `String`, so `?` works on both.
    fn init(config: Config) -> Result<Self, String>;

    /// Called on the host's timer (every second by default) with the current time in Unix
    /// milliseconds. The default does nothing.
    fn tick(&mut self, now_ms: u64) {
        let _ = now_ms;
    }

    /// Called with a message addressed to the deployment. `from` is the sender: a member's
    /// deployment id for a [`mesh`] message, the tenant's peer id through the tenant's node, or
    /// `cli` from the host's own admin API; `payload` is opaque bytes (at most 64 KiB). The
    /// default does nothing.
    fn message(&mut self, from: String, payload: Vec<u8>) {
        let _ = (from, payload);
    }
}

/// Exports a [`Plugin`] implementation as the component's `init`, `tick` and `message`.
///
/// Use it exactly once per plugin crate, at the crate root or in any module, with the type
/// that implements [`Plugin`]:
///
/// ```no_run
/// use degroup_sdk::{Config, Plugin};
///
/// struct Noop;
///
/// impl Plugin for Noop {
///     fn init(_config: Config) -> Result<Self, String> {
///         Ok(Noop)
///     }
/// }
///
/// degroup_sdk::export_plugin!(Noop);
/// ```
///
/// The instance returned by `init` is kept for the life of the wasm instance and passed to
/// every later `tick` and `message`. A `tick` or `message` that arrives before a successful
/// `init` (which the host never does) is logged as an error and ignored.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct __DegroupPluginExport;

            impl $crate::bindings::Guest for __DegroupPluginExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$plugin>(config)
                }

                fn tick(now: u64) {
                    $crate::__private::tick::<$plugin>(now)
                }

                fn message(from: ::std::string::String, payload: ::std::vec::Vec<u8>) {
                    $crate::__private::message::<$plugin>(from, payload)
                }
            }

    $crate::bindings::export!(__DegroupPluginExport with_types_in $crate::bindings);
        };
    };
}

/// What [`export_plugin!`] expands to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use std::any::Any;
    use std::cell::RefCell;

    use crate::{Config, Level, Plugin};

    thread_local! {
        /// The instance `init` returned. Wasm components are single-threaded and calls never
        /// overlap, so one slot is enough.
        static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    /// The `init` export: builds the plugin and keeps it.
    pub fn init<P: Plugin>(config: Vec<(String, String)>) -> Result<(), String> {
        let plugin = P::init(Config::from(config))?;
        INSTANCE.with(|slot| match slot.try_borrow_mut() {
            Ok(mut slot) => {
                *slot = Some(Box::new(plugin));
                Ok(())
            }
            Err(_) => Err("init called while the plugin was busy".to_string()),
        })
    }

    /// The `tick` export.
    pub fn tick<P: Plugin>(now_ms: u64) {
        with_instance::<P>("tick", |p| p.tick(now_ms));
    }

    /// The `message` export.
    pub fn message<P: Plugin>(from: String, payload: Vec<u8>) {
        with_instance::<P>("message", |p| p.message(from, payload));
    }

    fn with_instance<P: Plugin>(call: &str, f: impl FnOnce(&mut P)) {
        INSTANCE.with(|slot| {
            let Ok(mut slot) = slot.try_borrow_mut() else {
                crate::log::write(
                    Level::Error,
                    &format!("{call} called while the plugin was busy"),
                );
                return;
            };
            match slot.as_mut().and_then(|b| b.downcast_mut::<P>()) {
                Some(plugin) => f(plugin),
                None => crate::log::write(Level::Error, &format!("{call} called before init")),
            }
        });
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[derive(Debug)]
        struct Probe {
            ticks: u64,
            last_from: String,
        }

        impl Plugin for Probe {
            fn init(config: Config) -> Result<Self, String> {
                if config.get("fail").is_some() {
                    return Err("asked to fail".into());
                }
                Ok(Probe {
                    ticks: 0,
                    last_from: String::new(),
                })
            }

            fn tick(&mut self, _now_ms: u64) {
                self.ticks += 1;
                crate::info!("ticks = {}", self.ticks);
            }

            fn message(&mut self, from: String, _payload: Vec<u8>) {
                self.last_from = from;
            }
        }

        #[test]
        fn calls_reach_the_instance_init_created() {
            crate::testing::reset();
            tick::<Probe>(1);
            assert!(
                crate::testing::logs()
                    .iter()
                    .any(|l| l.message == "tick called before init")
            );
            assert_eq!(
                init::<Probe>(vec![("fail".into(), "1".into())]),
                Err("asked to fail".to_string())
            );
            assert_eq!(init::<Probe>(vec![]), Ok(()));
            tick::<Probe>(2);
            tick::<Probe>(3);
            message::<Probe>("cli".into(), vec![]);
            let logs = crate::testing::logs();
            assert_eq!(logs.last().map(|l| l.message.as_str()), Some("ticks = 2"));
            INSTANCE.with(|slot| {
                let slot = slot.borrow();
                let probe = slot.as_ref().and_then(|b| b.downcast_ref::<Probe>());
                assert_eq!(probe.map(|p| p.last_from.as_str()), Some("cli"));
            });
        }
    }
}
