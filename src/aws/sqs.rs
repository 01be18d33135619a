//! The events queue (`[events]`): SQS ReceiveMessage (long polling, batches of up to ten) and
//! DeleteMessageBatch, in SQS's JSON protocol, signed here (`aws::sigv4`) and sent by the SDK's
//! connector, as Security Hub is: two calls do not warrant another SDK crate.
//!
//! A message is deleted only once its re-audit succeeded; one that cannot be handled is left
//! alone, so SQS makes it visible again after the visibility timeout and, after the queue's
//! `maxReceiveCount`, moves it to the dead-letter queue.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_smithy_http_client::Connector;
use serde_json::{json, Value};

use crate::aws::credentials::Cached;

/// At most this many messages per ReceiveMessage (SQS's limit).
pub const MAX_MESSAGES: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// SQS answered with an error (`AWS.SimpleQueueService.NonExistentQueue`, `AccessDenied`...).
    #[error("SQS {operation}: {code} (HTTP {status}): {message}")]
    Service {
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("SQS {operation}: no answer: {message}")]
    Transport { operation: &'static str, message: String },
    #[error("SQS {operation}: no credentials: {message}")]
    Credentials { operation: &'static str, message: String },
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How often SQS has handed it out (1 the first time).
    pub receive_count: u32,
}

/// One queue, with the credentials of the SDK settings it was made from.
pub struct Queue {
    connector: Arc<Connector>,
    credentials: Cached,
    region: String,
    endpoint: String,
    url: String,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({})", self.url)
    }
}

impl Queue {
    /// `region`: the queue's (default: the SDK's); `endpoint_url`: default SQS's regional one.
    pub fn new(
        sdk: &SdkConfig,
        url: &str,
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Result<Queue, QueueError> {
        let credentials = sdk.credentials_provider().ok_or_else(|| QueueError::Credentials {
            operation: "ReceiveMessage",
            message: "no credentials provider is configured".into(),
        })?;
        let (region, endpoint) = crate::aws::sigv4::locate(sdk, "sqs", region, endpoint_url);
        Ok(Queue {
            connector: crate::aws::sigv4::connector(),
            credentials: Cached::new(credentials),
            region,
            endpoint,
            url: url.to_string(),
        })
    }

    /// Waits up to `wait` (long polling: it returns as soon as a message arrives) for up to
    /// [`MAX_MESSAGES`] messages.
    pub async fn receive(&self, wait: Duration) -> Result<Vec<Message>, QueueError> {
        let body = json!({
            "QueueUrl": self.url,
            "MaxNumberOfMessages": MAX_MESSAGES,
            "WaitTimeSeconds": wait.as_secs().min(20),
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        });
        let answer = self
            .call("ReceiveMessage", &body, wait + Duration::from_secs(10))
            .await?;
        Ok(messages(&answer))
    }

    /// Deletes handled messages; returns the receipt handles SQS did not delete.
    pub async fn delete(&self, receipt_handles: &[String]) -> Result<Vec<String>, QueueError> {
        let mut failed = Vec::new();
        for chunk in receipt_handles.chunks(MAX_MESSAGES as usize) {
            let entries: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| json!({"Id": i.to_string(), "ReceiptHandle": r}))
                .collect();
            let body = json!({"QueueUrl": self.url, "Entries": entries});
            let answer = self.call("DeleteMessageBatch", &body, Duration::from_secs(20)).await?;
            for f in answer["Failed"].as_array().into_iter().flatten() {
                if let Some(r) = f["Id"]
                    .as_str()
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| chunk.get(i))
                {
                    failed.push(r.clone());
                }
            }
        }
        Ok(failed)
    }

    async fn call(&self, operation: &'static str, body: &Value, timeout: Duration) -> Result<Value, QueueError> {
        let transport = |message: String| QueueError::Transport { operation, message };
        let creds = self.credentials.get().await.map_err(|e| QueueError::Credentials {
            operation,
            message: crate::aws::credentials::explain(&e).unwrap_or_else(|| crate::aws::credentials::chain_text(&e)),
        })?;
        let bytes = body.to_string().into_bytes();
        let target = format!("AmazonSQS.{operation}");
        let post = crate::aws::sigv4::Post {
            uri: &format!("{}/", self.endpoint),
            region: &self.region,
            service: "sqs",
            content_type: "application/x-amz-json-1.0",
            target: Some(&target),
            body: &bytes,
        };
        let request = crate::aws::sigv4::signed_post(creds, &post).map_err(transport)?;
        let answer = tokio::time::timeout(timeout, crate::aws::sigv4::exchange(&self.connector, request))
            .await
            .map_err(|_| transport(format!("no answer within {} s", timeout.as_secs())))?
            .map_err(transport)?;
        if answer.ok() {
            return Ok(answer.json);
        }
        Err(QueueError::Service {
            operation,
            status: answer.status,
            code: answer.code(),
            message: answer.message(),
        })
    }
}

/// The messages of a ReceiveMessage answer (none when it has none, or is not one).
pub fn messages(answer: &Value) -> Vec<Message> {
    answer["Messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some(Message {
                id: m["MessageId"].as_str()?.to_string(),
                receipt_handle: m["ReceiptHandle"].as_str()?.to_string(),
                body: m["Body"].as_str().unwrap_or_default().to_string(),
                receive_count: m["Attributes"]["ApproximateReceiveCount"]
                    .as_str()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_from_the_answer_and_a_bad_one_is_skipped() {
        let answer = json!({"Messages": [
            {"MessageId": "1", "ReceiptHandle": "r1", "Body": "{}", "Attributes": {"ApproximateReceiveCount": "3"}},
            {"MessageId": "2", "Body": "no receipt handle"},
            {"MessageId": "3", "ReceiptHandle": "r3", "Body": "x"}
        ]});
        let m = messages(&answer);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].receipt_handle.as_str(), m[0].receive_count), ("r1", 3));
        assert_eq!(m[1].receive_count, 1);
        assert!(messages(&json!({})).is_empty());
    }
}
