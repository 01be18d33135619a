//! A benchmark-only IAM, STS and Organizations responder: in-memory accounts of `users` users
//! with `keys_per_user` keys each, answering ListUsers (100 per page, Marker), ListAccessKeys,
//! GetAccessKeyLastUsed, GetAccountSummary, GenerateCredentialReport, GetCredentialReport,
//! ListEntitiesForPolicy (nobody quarantined), STS
//! GetCallerIdentity and AssumeRole, and Organizations ListAccounts (20 per page) with canned,
//! AWS-shaped answers. It is far cheaper per request than moto, so keywarden's own cost shows.
//! With `accounts` > 0 it is an organization: the management account 123456789012 lists
//! member accounts 100000000000.., and a request is answered for the account whose AssumeRole
//! credentials signed it. Not for tests: it knows nothing else and checks no signature.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub struct FakeIam {
    pub users: usize,
    pub keys_per_user: usize,
    /// Key 2.. of user i is active only when `i % pairs_every == 0` (1: every user has all
    /// keys active, so every user has a finding).
    pub pairs_every: usize,
    pub requests: AtomicU64,
    /// Member accounts (0: one account, 123456789012, and no organization).
    pub accounts: usize,
    /// Requests by operation.
    pub by_operation: Mutex<BTreeMap<String, u64>>,
    /// (account index, user index) whose first key was rotated: a new id and a newer date.
    pub rotated: Mutex<HashSet<(usize, usize)>>,
}

const MANAGEMENT: &str = "123456789012";
const ROTATED: &str = "2026-11-30T00:00:00Z";

fn member_id(a: usize) -> String {
    format!("{}", 100_000_000_000_usize + a)
}

impl FakeIam {
    pub fn new(users: usize, keys_per_user: usize, pairs_every: usize) -> FakeIam {
        FakeIam {
            users,
            keys_per_user,
            pairs_every: pairs_every.max(1),
            requests: Default::default(),
            accounts: 0,
            by_operation: Default::default(),
            rotated: Default::default(),
        }
    }

    /// An organization of `accounts` member accounts.
    #[allow(dead_code)] // each bench includes this file; only org_cycle uses these two
    pub fn organization(accounts: usize, users: usize, keys_per_user: usize, pairs_every: usize) -> FakeIam {
        FakeIam {
            accounts,
            ..FakeIam::new(users, keys_per_user, pairs_every)
        }
    }

    /// Takes the counts by operation.
    #[allow(dead_code)]
    pub fn take_counts(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.by_operation.lock().unwrap())
    }

    /// Key `j` of user `i` in account `a`: its id and creation date.
    fn key(&self, a: usize, i: usize, j: usize) -> (String, &'static str) {
        if j == 0 && self.rotated.lock().unwrap().contains(&(a, i)) {
            (format!("AKIR{a:06}{i:06}{j:04}"), ROTATED)
        } else if j == 0 {
            (format!("AKIA{a:06}{i:06}{j:04}"), CREATED)
        } else {
            // A second apart, as real keys are: a shared second is read live instead.
            (format!("AKIA{a:06}{i:06}{j:04}"), CREATED_SECOND)
        }
    }

    fn active(&self, i: usize, j: usize) -> bool {
        j == 0 || i.is_multiple_of(self.pairs_every)
    }

    /// The credential report as IAM would produce it for account `a` (real column set).
    fn report_csv(&self, a: usize, account: &str) -> String {
        let mut csv = String::from(
            "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,\
password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,\
access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,\
access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,\
cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n",
        );
        let slot = |i: usize, j: usize| {
            let (_, created) = self.key(a, i, j);
            if self.keys_per_user <= j {
                "false,N/A,N/A,N/A,N/A".to_string()
            } else if self.active(i, j) {
                format!("true,{created},{USED},us-east-1,s3")
            } else {
                format!("false,{created},N/A,N/A,N/A")
            }
        };
        for i in 0..self.users {
            let n = user_name(i);
            csv.push_str(&format!(
                "{n},arn:aws:iam::{account}:user/{n},{CREATED},false,N/A,N/A,N/A,false,{},{},false,N/A,false,N/A\n",
                slot(i, 0),
                slot(i, 1),
            ));
        }
        csv
    }
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
// Recent enough that only a second active key is a finding (the benches run near these dates;
// later, age findings just add report lines).
const CREATED: &str = "2026-11-01T00:00:00Z";
const USED: &str = "2026-11-20T00:00:00Z";
const CREATED_SECOND: &str = "2026-11-02T00:00:00Z";

pub fn user_name(i: usize) -> String {
    format!("user-{i:06}")
}

fn param<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn wrap(action: &str, ns: &str, result: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{ns}\"><{action}Result>{result}</{action}Result>\
         <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata></{action}Response>"
    )
}

impl FakeIam {
    /// `signer`: the access key id of the request's signature; `target`: its X-Amz-Target.
    pub fn answer(&self, signer: &str, target: &str, body: &str) -> (u16, String) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let action = param(body, "Action").unwrap_or_else(|| target.rsplit('.').next().unwrap_or(""));
        *self.by_operation.lock().unwrap().entry(action.to_string()).or_default() += 1;
        // Member credentials are "ASIA" + the account id; anything else is the management's.
        let (a, account) = match signer.strip_prefix("ASIA").and_then(|id| id.parse::<usize>().ok()) {
            Some(id) if id >= 100_000_000_000 => (id - 100_000_000_000, id.to_string()),
            _ => (usize::MAX, MANAGEMENT.to_string()),
        };
        match action {
            "ListAccounts" => {
                let start: usize = body
                    .split("\"NextToken\":\"")
                    .nth(1)
                    .and_then(|t| t.split('"').next()?.parse().ok())
                    .unwrap_or(0);
                let end = (start + 20).min(self.accounts);
                let accounts: Vec<String> = (start..end)
                    .map(|m| {
                        let id = member_id(m);
                        format!(
                            "{{\"Id\":\"{id}\",\"Arn\":\"arn:aws:organizations::{MANAGEMENT}:account/o-bench/{id}\",\"Email\":\"a{m}@example.com\",\"Name\":\"account-{m}\",\"Status\":\"ACTIVE\",\"JoinedMethod\":\"CREATED\",\"JoinedTimestamp\":1.7E9}}"
                        )
                    })
                    .collect();
                let next = if end < self.accounts {
                    format!(",\"NextToken\":\"{end}\"")
                } else {
                    String::new()
                };
                (200, format!("{{\"Accounts\":[{}]{next}}}", accounts.join(",")))
            }
            "AssumeRole" => {
                let member = body
                    .split("iam%3A%3A")
                    .nth(1)
                    .map(|rest| rest.chars().take(12).collect::<String>())
                    .unwrap_or_default();
                (
                    200,
                    wrap(
                        action,
                        "https://sts.amazonaws.com/doc/2011-06-15/",
                        &format!(
                            "<Credentials><AccessKeyId>ASIA{member}</AccessKeyId><SecretAccessKey>bench</SecretAccessKey>\
                             <SessionToken>bench</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
                             <AssumedRoleUser><Arn>arn:aws:sts::{member}:assumed-role/keywarden-audit/keywarden</Arn>\
                             <AssumedRoleId>AROABENCH:keywarden</AssumedRoleId></AssumedRoleUser>"
                        ),
                    ),
                )
            }
            "GetCallerIdentity" => (
                200,
                wrap(
                    action,
                    "https://sts.amazonaws.com/doc/2011-06-15/",
                    "<Arn>arn:aws:iam::123456789012:user/bench</Arn><UserId>AIDABENCH</UserId><Account>123456789012</Account>",
                ),
            ),
            "GetAccountSummary" => (
                200,
                wrap(
                    action,
                    NS,
                    &format!(
                        "<SummaryMap><entry><key>AccountAccessKeysPresent</key><value>0</value></entry>\
                         <entry><key>Users</key><value>{}</value></entry></SummaryMap>",
                        self.users
                    ),
                ),
            ),
            "GenerateCredentialReport" => (200, wrap(action, NS, "<State>COMPLETE</State>")),
            "GetCredentialReport" => (
                200,
                wrap(
                    action,
                    NS,
                    &format!(
                        "<Content>{}</Content><ReportFormat>text/csv</ReportFormat><GeneratedTime>{USED}</GeneratedTime>",
                        base64(self.report_csv(a, &account).as_bytes())
                    ),
                ),
            ),
            "ListUsers" => {
                let start: usize = param(body, "Marker").and_then(|m| m.parse().ok()).unwrap_or(0);
                let end = (start + 100).min(self.users);
                let mut xml = String::with_capacity(300 * (end - start) + 100);
                xml.push_str("<Users>");
                for i in start..end {
                    let n = user_name(i);
                    xml.push_str(&format!(
                        "<member><Path>/</Path><UserName>{n}</UserName><UserId>AIDA{i:017}</UserId>\
                         <Arn>arn:aws:iam::{account}:user/{n}</Arn><CreateDate>{CREATED}</CreateDate></member>"
                    ));
                }
                xml.push_str("</Users>");
                if end < self.users {
                    xml.push_str(&format!("<IsTruncated>true</IsTruncated><Marker>{end}</Marker>"));
                } else {
                    xml.push_str("<IsTruncated>false</IsTruncated>");
                }
                (200, wrap(action, NS, &xml))
            }
            "ListAccessKeys" => {
                let name = param(body, "UserName").unwrap_or("");
                let i: usize = name.strip_prefix("user-").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
                let mut xml = String::from("<AccessKeyMetadata>");
                if i < self.users {
                    for j in 0..self.keys_per_user {
                        let (id, created) = self.key(a, i, j);
                        xml.push_str(&format!(
                            "<member><UserName>{name}</UserName><AccessKeyId>{id}</AccessKeyId><Status>{}</Status>\
                             <CreateDate>{created}</CreateDate></member>",
                            if self.active(i, j) { "Active" } else { "Inactive" }
                        ));
                    }
                }
                xml.push_str("</AccessKeyMetadata><IsTruncated>false</IsTruncated>");
                (200, wrap(action, NS, &xml))
            }
            "GetAccessKeyLastUsed" => (
                200,
                wrap(
                    action,
                    NS,
                    &format!(
                        "<UserName>bench</UserName><AccessKeyLastUsed><LastUsedDate>{USED}</LastUsedDate>\
                         <ServiceName>s3</ServiceName><Region>us-east-1</Region></AccessKeyLastUsed>"
                    ),
                ),
            ),
            // Nobody carries a quarantine policy (rules.exposed_key).
            "ListEntitiesForPolicy" => (
                200,
                wrap(
                    action,
                    NS,
                    "<PolicyGroups/><PolicyUsers/><PolicyRoles/><IsTruncated>false</IsTruncated>",
                ),
            ),
            _ => (
                400,
                format!("<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>{action}</Message></Error></ErrorResponse>"),
            ),
        }
    }

    /// Serves on a loopback port until the runtime ends; returns the address.
    pub async fn serve(self: Arc<Self>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake IAM");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = Arc::clone(&self);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let me = Arc::clone(&me);
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string()
                            };
                            let signer = header("authorization")
                                .split("Credential=")
                                .nth(1)
                                .and_then(|c| c.split('/').next())
                                .unwrap_or("")
                                .to_string();
                            let target = header("x-amz-target");
                            let json = !target.is_empty();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, xml) = me.answer(&signer, &target, &String::from_utf8_lossy(&body));
                            let mut resp = Response::new(Full::new(Bytes::from(xml)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
                            let kind = if json { "application/x-amz-json-1.1" } else { "text/xml" };
                            resp.headers_mut()
                                .insert("content-type", hyper::header::HeaderValue::from_static(kind));
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }
}
