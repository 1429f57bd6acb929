//! Loss values and gradients against PyTorch with reid-strong-baseline's definitions
//! (`tests/fixtures/make_fixtures.py`), and a finite-difference check of the triplet loss.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use scal_losses::{
    CriticMse, CriticObjective, LabelSmoothedCrossEntropyConfig, TripletDistance, TripletLossConfig,
};

const TOLERANCE: f32 = 1e-5;

fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/losses.safetensors"))
        .unwrap()
}

fn read(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<u8>, safetensors::Dtype) {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let t = file.tensor(name).unwrap();
    (t.shape().to_vec(), t.data().to_vec(), t.dtype())
}

fn floats(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<f32>) {
    let (shape, data, dtype) = read(bytes, name);
    assert_eq!(dtype, safetensors::Dtype::F32);
    (
        shape,
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

fn labels(bytes: &[u8], device: &Device) -> Tensor<1, Int> {
    let (shape, data, _) = read(bytes, "labels");
    let v: Vec<i64> = data
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn input(bytes: &[u8], name: &str, device: &Device) -> Tensor<2> {
    let (shape, v) = floats(bytes, name);
    Tensor::<2>::from_data(TensorData::new(v, shape), device).require_grad()
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data().try_into_vec::<f32>().unwrap()[0]
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(bytes: &[u8], case: &str, input_name: &str, loss: impl Fn(Tensor<2>) -> Tensor<1>) {
    let device = Device::flex().autodiff();
    let x = input(bytes, input_name, &device);
    let value = loss(x.clone());
    let got = scalar(value.clone());
    let want = floats(bytes, case).1[0];
    assert!(
        (got - want).abs() <= TOLERANCE,
        "{case}: {got} vs PyTorch {want}"
    );
    let grads = value.backward();
    let grad: Vec<f32> = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let diff = max_diff(&grad, &floats(bytes, &format!("{case}_grad")).1);
    assert!(
        diff <= TOLERANCE,
        "{case}: gradient differs from PyTorch's by {diff}"
    );
}

#[test]
fn triplet_losses_match_pytorch() {
    let bytes = fixture();
    let device = Device::flex().autodiff();
    let y = labels(&bytes, &device);
    let configs = [
        ("triplet_euclidean", TripletLossConfig::new()),
        (
            "triplet_squared",
            TripletLossConfig::new().with_distance(TripletDistance::Squared),
        ),
        (
            "triplet_soft",
            TripletLossConfig::new().with_soft_margin(true),
        ),
        (
            "triplet_margin_1",
            TripletLossConfig::new().with_margin(1.0),
        ),
    ];
    for (case, config) in configs {
        check(&bytes, case, "features", |f| {
            config.init().forward(f, y.clone())
        });
    }
}

#[test]
fn label_smoothed_cross_entropy_matches_pytorch() {
    let bytes = fixture();
    let device = Device::flex().autodiff();
    let y = labels(&bytes, &device);
    check(&bytes, "ce_eps01", "logits", |l| {
        LabelSmoothedCrossEntropyConfig::new()
            .with_epsilon(0.1)
            .init()
            .forward(l, y.clone())
    });
    check(&bytes, "ce_eps00", "logits", |l| {
        LabelSmoothedCrossEntropyConfig::new()
            .with_epsilon(0.0)
            .init()
            .forward(l, y.clone())
    });
}

#[test]
fn triplet_gradient_matches_finite_differences() {
    let bytes = fixture();
    let device = Device::flex().autodiff();
    let y = labels(&bytes, &device);
    let config = TripletLossConfig::new();
    let (shape, base) = floats(&bytes, "features");
    let x = Tensor::<2>::from_data(TensorData::new(base.clone(), shape.clone()), &device)
        .require_grad();
    let loss = config.init().forward(x.clone(), y.clone());
    let analytic: Vec<f32> = x
        .grad(&loss.backward())
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();

    let plain = Device::flex();
    let y_plain = labels(&bytes, &plain);
    let eval = |values: Vec<f32>| {
        scalar(config.init().forward(
            Tensor::<2>::from_data(TensorData::new(values, shape.clone()), &plain),
            y_plain.clone(),
        ))
    };
    let h = 1e-2f32;
    let mut checked = 0;
    for i in (0..base.len()).step_by(7) {
        let (mut up, mut down) = (base.clone(), base.clone());
        up[i] += h;
        down[i] -= h;
        let numeric = (eval(up) - eval(down)) / (2.0 * h);
        assert!(
            (numeric - analytic[i]).abs() < 2e-3,
            "element {i}: finite difference {numeric} vs backward {}",
            analytic[i]
        );
        checked += 1;
    }
    assert!(checked > 50);
    assert!(
        analytic.iter().any(|g| g.abs() > 1e-3),
        "the loss must have a gradient"
    );
}

#[test]
fn critic_losses_follow_their_definitions() {
    let device = Device::flex();
    let v1 = Tensor::<1>::from_data(TensorData::new(vec![0.5f32, 1.5, 2.0], [3]), &device);
    let v2 = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 1.0, 1.0], [3]), &device);
    let r = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 2.0], [3]), &device);
    // -(mean v1 + mean v2) = -(4/3 + 2/3) = -2
    assert!((scalar(CriticObjective::new().forward(&[v1.clone(), v2.clone()])) + 2.0).abs() < 1e-6);
    // mean((v1-r)^2) = (0.25+0.25+0)/3, mean((v2-r)^2) = (1+0+1)/3
    let want = 0.5 / 3.0 + 2.0 / 3.0;
    let shared = CriticMse::new().forward(&[v1.clone(), v2.clone()], r.clone());
    assert!((scalar(shared) - want).abs() < 1e-6);
    // Each critic against its own reward: mean((v1-r)^2) as above, mean((v2-r2)^2) = (0+0+1)/3
    let r2 = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0], [3]), &device);
    let each = CriticMse::new().forward_each(&[v1, v2], &[r, r2]);
    assert!((scalar(each) - (0.5 / 3.0 + 1.0 / 3.0)).abs() < 1e-6);
}

#[test]
fn anchors_without_negatives_contribute_nothing() {
    let device = Device::flex();
    let f = Tensor::<2>::from_data(
        TensorData::new(vec![0.0f32, 0.0, 3.0, 4.0], [2, 2]),
        &device,
    );
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 1], [2]), &device);
    assert_eq!(scalar(TripletLossConfig::new().init().forward(f, y)), 0.0);
}
