//! A benchmark-only IAM (and STS) responder: an in-memory account of `users` users with
//! `keys_per_user` keys each, answering ListUsers (100 per page, Marker), ListAccessKeys,
//! GetAccessKeyLastUsed, GetAccountSummary, GenerateCredentialReport, GetCredentialReport and
//! STS GetCallerIdentity with canned, AWS-shaped XML. It is far cheaper per request than moto, so keywarden's own cost shows.
//! Not for tests: it knows nothing else and checks no signature.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
}

impl FakeIam {
    pub fn new(users: usize, keys_per_user: usize, pairs_every: usize) -> FakeIam {
        FakeIam {
            users,
            keys_per_user,
            pairs_every: pairs_every.max(1),
            requests: Default::default(),
        }
    }

    fn active(&self, i: usize, j: usize) -> bool {
        j == 0 || i.is_multiple_of(self.pairs_every)
    }

    /// The credential report as IAM would produce it for this account (real column set).
    fn report_csv(&self) -> String {
        let mut csv = String::from(
            "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,\
password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,\
access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,\
access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,\
cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n",
        );
        let slot = |present: bool, active: bool| {
            if !present {
                "false,N/A,N/A,N/A,N/A".to_string()
            } else if active {
                format!("true,{CREATED},{USED},us-east-1,s3")
            } else {
                format!("false,{CREATED},N/A,N/A,N/A")
            }
        };
        for i in 0..self.users {
            let n = user_name(i);
            csv.push_str(&format!(
                "{n},arn:aws:iam::123456789012:user/{n},{CREATED},false,N/A,N/A,N/A,false,{},{},false,N/A,false,N/A\n",
                slot(self.keys_per_user > 0, self.active(i, 0)),
                slot(self.keys_per_user > 1, self.active(i, 1)),
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

pub fn user_name(i: usize) -> String {
    format!("user-{i:06}")
}

fn key_id(i: usize, j: usize) -> String {
    format!("AKIA{i:012}{j:04}")
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
    pub fn answer(&self, body: &str) -> (u16, String) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let action = param(body, "Action").unwrap_or("");
        match action {
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
                        base64(self.report_csv().as_bytes())
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
                         <Arn>arn:aws:iam::123456789012:user/{n}</Arn><CreateDate>{CREATED}</CreateDate></member>"
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
                        xml.push_str(&format!(
                            "<member><UserName>{name}</UserName><AccessKeyId>{}</AccessKeyId><Status>{}</Status>\
                             <CreateDate>{CREATED}</CreateDate></member>",
                            key_id(i, j),
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
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, xml) = me.answer(&String::from_utf8_lossy(&body));
                            let mut resp = Response::new(Full::new(Bytes::from(xml)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
                            resp.headers_mut()
                                .insert("content-type", hyper::header::HeaderValue::from_static("text/xml"));
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
