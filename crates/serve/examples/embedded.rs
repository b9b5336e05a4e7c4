//! thrum's worker pool inside your own axum service, without the v2 protocol: a `POST
//! /predict` that takes 64 floats and returns the zoo MLP's 10 scores. Requests from any number
//! of connections are batched into engine calls on the pool's threads; a full queue is a 503.
//!
//! ```sh
//! cargo run -p thrum-serve --example embedded            # serves 127.0.0.1:3000 until Ctrl-C
//! cargo run -p thrum-serve --example embedded -- --once  # one request through the pool, then exits
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // an example: failures end it with their message

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use thrum_core::{Engine, ModelFormat, ModelSource, Options, Tensor};
use thrum_serve::{Batching, ModelPool, PoolConfig};

async fn predict(
    State(pool): State<ModelPool>,
    Json(x): Json<Vec<f32>>,
) -> Result<Json<Vec<f32>>, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let input = Tensor::from_vec(vec![1, x.len()], x).map_err(|e| bad(e.to_string()))?;
    match pool.submit(vec![input]).await {
        Ok(outputs) => {
            Ok(Json(outputs[0].as_slice::<f32>().map_err(|e| bad(e.to_string()))?.to_vec()))
        }
        Err(e) => Err((
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.to_string(),
        )),
    }
}

#[tokio::main]
async fn main() {
    let graph = thrum_zoo::find("mlp").unwrap().build(thrum_zoo::DEFAULT_SEED);
    let source = ModelSource::memory("mlp", ModelFormat::ONNX, thrum_zoo::onnx::export(&graph));
    let model = thrum_tract::TractEngine.load(&source, &Options::default()).unwrap();
    let config = PoolConfig::new(2).with_batching(Batching::new(16, Duration::from_micros(500)));
    // Starting warms every worker: blocking work, off the async threads.
    let pool = tokio::task::spawn_blocking(move || ModelPool::start("mlp", model, config))
        .await
        .unwrap()
        .unwrap();
    if std::env::args().any(|a| a == "--once") {
        let outputs = pool
            .submit(vec![Tensor::zeros(thrum_core::DType::F32, &[1, 64]).unwrap()])
            .await
            .unwrap();
        println!("scores: {:?}", outputs[0].as_slice::<f32>().unwrap());
        return;
    }
    let app = Router::new().route("/predict", post(predict)).with_state(pool);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
    println!("POST a JSON list of 64 numbers to http://127.0.0.1:3000/predict");
    axum::serve(listener, app).await.unwrap();
}
