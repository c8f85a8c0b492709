//! The CLI's side of the admin API: finds the node through its data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::de::DeserializeOwned;

use crate::api::{ADDR_FILE, ErrorBody, TOKEN_FILE};
use crate::error::ErrorCode;

/// A failure the node answered with (or one met on the way to it), with its stable code when
/// there is one. The CLI decides what to advise from [`ApiFailure::code`], never from the text.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    /// `None` for a node older than the codes.
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl ApiFailure {
    /// The code of an error returned by [`ApiClient`], if it carries one.
    pub fn code_of(e: &anyhow::Error) -> Option<ErrorCode> {
        e.downcast_ref::<ApiFailure>().and_then(|f| f.code)
    }
}

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
        let code = body.as_ref().and_then(ErrorBody::code);
        let detail = body.map(|b| b.error).unwrap_or_else(|| status.to_string());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the node at {} refused the token in {}: {detail}; is that data dir's node the one listening there?",
                self.base,
                self.data_dir.join(TOKEN_FILE).display()
            );
        }
        Err(ApiFailure {
            code,
            message: detail,
        }
        .into())
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            // Nothing reached the node.
            anyhow!(
                "no degroup node is answering at {} for data dir {} (it may have stopped without cleaning up); start one with `degroup node --data-dir {}`",
                self.base,
                self.data_dir.display(),
                self.data_dir.display()
            )
        } else {
            // The request may have reached the node, which may have acted on it.
            ApiFailure {
                code: Some(ErrorCode::OutcomeUnknown),
                message: format!(
                    "no answer from the node at {} ({e}); it may or may not have done it",
                    self.base
                ),
            }
            .into()
        }
    }
}
