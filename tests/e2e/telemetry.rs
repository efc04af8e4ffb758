//! OpenTelemetry: with `telemetry.otlp_endpoint` set, every request is a
//! span exported over OTLP/HTTP (JSON) — its route template, method, status
//! and the caller's trace — and nothing personal. A minimal OTLP/HTTP
//! receiver, started here, records every export request as it arrives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::*;
use crate::common::*;

/// A receiver of `POST /v1/traces`: every body it got, raw.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Self {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: String| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(body);
                    ([("content-type", "application/json")], "{}")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, bodies }
    }

    fn raw(&self) -> String {
        self.bodies.lock().unwrap().join("\n")
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        let bodies = self.bodies.lock().unwrap().clone();
        let mut out = Vec::new();
        for b in bodies {
            let doc: Value = serde_json::from_str(&b).expect("an OTLP JSON body");
            for rs in doc["resourceSpans"].as_array().expect("resourceSpans") {
                assert_eq!(
                    rs["resource"]["attributes"][0],
                    json!({"key": "service.name", "value": {"stringValue": "ketenpoort"}})
                );
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    out.extend(ss["spans"].as_array().unwrap().iter().cloned());
                }
            }
        }
        out
    }

    /// The spans of `trace`, once at least `n` have arrived (or the wait
    /// is over: the caller's assertions then say what is missing).
    async fn spans_of(&self, trace: &str, n: usize) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let found: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["traceId"] == trace)
                .collect();
            if found.len() >= n || Instant::now() > until {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
        .unwrap_or_else(|| panic!("no {key} in {span}"))
}

/// A fresh W3C trace context: (traceparent, trace id, parent span id).
fn trace_context() -> (String, String, String) {
    let trace = random_id();
    let parent = random_id()[..16].to_owned();
    (format!("00-{trace}-{parent}-01"), trace, parent)
}

#[tokio::test]
async fn each_request_is_a_span_with_its_route_template_and_nothing_personal() {
    let receiver = Receiver::start().await;
    let server =
        Server::start(Opts::new().env("KETENPOORT_TELEMETRY__OTLP_ENDPOINT", &receiver.url)).await;
    // Canaries: a name in a signal body, a header, a query value, a path
    // segment, and what the request path itself carries (the signal id).
    let marker = format!("Canarium{}", &random_id()[..10]);
    let header_marker = format!("hdr{}", random_id());
    let query_marker = format!("qry{}", random_id());
    let path_marker = format!("pth{}", random_id());
    let reporter = Role::of(&server, "emmen", "aandachtfunctionaris-sociaal");
    let mut body: Value = serde_json::from_str(include_str!("../../examples/signal.json")).unwrap();
    body["victims"][0]["name"] = json!(format!("{marker} Vogelaar"));
    body["narrative"] = json!(format!("melding over {marker}"));

    let (tp_submit, trace_submit, parent_submit) = trace_context();
    let res = send(
        reporter
            .request(Method::POST, "/v1/signals", "signalering")
            .header("traceparent", &tp_submit)
            .header("x-canary", &header_marker)
            .json(&body),
    )
    .await;
    let created = ok_json(res, 201).await;
    let id = created["id"].as_str().unwrap().to_owned();

    let (tp_read, trace_read, _) = trace_context();
    let res = send(
        Role::of(&server, "zvhd", "ketenregisseur")
            .request(Method::GET, &format!("/v1/signals/{id}"), "drieluik")
            .header("traceparent", &tp_read)
            .header("user-agent", &header_marker),
    )
    .await;
    assert_eq!(res.status(), 200);
    let answered = header(&res, "traceparent").unwrap();

    let (tp_miss, trace_miss, _) = trace_context();
    let res = send(
        server
            .get(&format!("/v1/nothing/{path_marker}?q={query_marker}"))
            .header("traceparent", &tp_miss),
    )
    .await;
    assert_eq!(res.status(), 404);

    // One span per request, each in the caller's trace, as its child.
    let submit = receiver.spans_of(&trace_submit, 1).await;
    assert_eq!(submit.len(), 1, "{submit:?}");
    let s = &submit[0];
    assert_eq!(s["name"], "POST /v1/signals");
    assert_eq!(s["parentSpanId"], parent_submit.as_str());
    assert_eq!(s["kind"], 2);
    assert_eq!(
        attribute(s, "http.route"),
        &json!({"stringValue": "/v1/signals"})
    );
    assert_eq!(
        attribute(s, "http.request.method"),
        &json!({"stringValue": "POST"})
    );
    assert_eq!(
        attribute(s, "http.response.status_code"),
        &json!({"intValue": "201"})
    );

    let read = receiver.spans_of(&trace_read, 1).await;
    assert_eq!(read.len(), 1, "{read:?}");
    let s = &read[0];
    assert_eq!(
        attribute(s, "http.route"),
        &json!({"stringValue": "/v1/signals/{id}"})
    );
    assert_eq!(
        attribute(s, "http.response.status_code"),
        &json!({"intValue": "200"})
    );
    // The span is the one the answer's traceparent names.
    assert_eq!(
        answered,
        format!("00-{trace_read}-{}-01", s["spanId"].as_str().unwrap())
    );
    let start: u128 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = s["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && end >= start);

    let miss = receiver.spans_of(&trace_miss, 1).await;
    assert_eq!(miss.len(), 1, "{miss:?}");
    assert_eq!(
        attribute(&miss[0], "http.route"),
        &json!({"stringValue": "unmatched"})
    );
    assert_eq!(
        attribute(&miss[0], "http.response.status_code"),
        &json!({"intValue": "404"})
    );

    // Nothing personal anywhere in what was exported: not the name in the
    // body, the headers, the query, the path, the signal id or the token.
    let raw = receiver.raw();
    let token = reporter.token().to_owned();
    for canary in [
        marker.as_str(),
        header_marker.as_str(),
        query_marker.as_str(),
        path_marker.as_str(),
        id.as_str(),
        &id.replace('-', ""),
        token.as_str(),
        "Vogelaar",
        "123456782",
        "emmen",
        "signalering",
    ] {
        assert!(
            !raw.contains(canary),
            "{canary} reached the span exporter: {raw}"
        );
    }
}

/// An endpoint that is not plain HTTP is refused at start, saying why.
#[tokio::test]
async fn an_unusable_endpoint_stops_the_start() {
    let data = DataDir::new().await;
    let (status, stderr) = Server::refused(
        &data,
        Opts::new().env(
            "KETENPOORT_TELEMETRY__OTLP_ENDPOINT",
            "https://collector:4318",
        ),
    );
    assert!(!status.success());
    assert!(stderr.contains("telemetry.otlp_endpoint"), "{stderr}");
}
