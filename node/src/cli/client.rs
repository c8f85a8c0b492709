//! The CLI's side of the admin API: finds the node through its data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::de::DeserializeOwned;

use crate::api::{ADDR_FILE, ErrorBody, TOKEN_FILE};

/// A client for one node's admin API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    data_dir: PathBuf,
    http: reqwest::Client,
}

impl ApiClient {
    /// Reads `api.addr` and `api.token` from a data directory.
    pub fn from_data_dir(dir: &Path) -> anyhow::Result<Self> {
        let addr_path = dir.join(ADDR_FILE);
        let addr = match std::fs::read_to_string(&addr_path) {
            Ok(a) => a.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no degroup node is running with data dir {} (no {ADDR_FILE} there); start one with `degroup node --data-dir {}`",
                dir.display(),
                dir.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", addr_path.display()));
            }
        };
        let token = std::fs::read_to_string(dir.join(TOKEN_FILE))
            .with_context(|| {
                format!(
                    "cannot read the API token in {}",
                    dir.join(TOKEN_FILE).display()
                )
            })?
            .trim()
            .to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(3))
            .no_proxy()
            .build()?;
        Ok(Self {
            base: format!("http://{addr}"),
            token,
            data_dir: dir.to_owned(),
            http,
        })
    }

    /// `GET path`, decoded as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// `GET path` with query parameters.
    pub async fn get_query<T: DeserializeOwned, Q: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
    ) -> anyhow::Result<T> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(request).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<T: DeserializeOwned, B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let request = self.http.put(format!("{}{path}", self.base)).json(body);
        self.send(request).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: DeserializeOwned, B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .context("the node sent a response this degroup cannot read");
        }
        let body: Option<ErrorBody> = response.json().await.ok();
        let detail = body.map(|b| b.error).unwrap_or_else(|| status.to_string());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the node at {} refused the token in {}: {detail}; is that data dir's node the one listening there?",
                self.base,
                self.data_dir.join(TOKEN_FILE).display()
            );
        }
        Err(anyhow!("{detail}"))
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        if e.is_connect() || e.is_timeout() {
            anyhow!(
                "no degroup node is answering at {} for data dir {} (it may have stopped without cleaning up); start one with `degroup node --data-dir {}`",
                self.base,
                self.data_dir.display(),
                self.data_dir.display()
            )
        } else {
            anyhow!("request to the node at {} failed: {e}", self.base)
        }
    }
}
