//! Train SCAL in your own loop: the objective of `scal_model::objective` (triplet, smoothed
//! cross-entropy, the critics' J_cri and J_mse, each reaching only the parameters the paper
//! says) in one backward pass, and any Burn optimizer.
//!
//! ```sh
//! cargo run --release -p scal-model --example train_own_loop
//! ```

use burn::optim::{AdamConfig, GradientsParams};
use scal_model::objective::{StepConfig, StepReport, scal_loss};
use scal_model::{AttentionKind, ScalConfig};

fn main() {
    // Autodiff on the CPU; `Device::default()` picks a GPU where the build has one.
    let device = burn::tensor::Device::flex().autodiff();
    // A fixed batch of 8 images (4 identities × 2) at 64 × 32; use your own loader here.
    let (images, labels) = scal_model::probe::probe_batch(&device);
    let mut model = ScalConfig::new(4)
        .with_base_width(8)
        .with_height(64)
        .with_width(32)
        .with_attention(AttentionKind::Channel)
        .init(&device);
    let mut optimizer = AdamConfig::new().init();
    let objective = StepConfig::new(); // λ = 1, reward R_c + R_a, margin 0.3, ε = 0.1

    for step in 1..=20 {
        let loss = scal_loss(&model, images.clone(), labels.clone(), &objective);
        let report = StepReport::from_loss(&loss);
        let grads = GradientsParams::from_grads(loss.total.backward(), &model);
        model = optimizer.step(1e-3, model, grads);
        if step % 5 == 0 {
            println!(
                "step {step}: triplet {:.3}, cross-entropy {:.3}, critic MSE {:.3}, R_a rate {:.2}",
                report.triplet,
                report.classification,
                report.critic_mse.unwrap_or(f32::NAN),
                report.amelioration_rate.unwrap_or(f32::NAN),
            );
        }
    }
}
