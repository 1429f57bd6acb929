//! The CPU backend's own convolution and batch-norm kernels (the patched burn-flex in
//! `vendor/burn-flex`: `ops/conv_grad.rs`, `ops/batch_norm.rs`) against PyTorch.
//!
//! `fixtures/flex_ops.safetensors` (`fixtures/make_flex_ops_fixture.py`) holds PyTorch's
//! float64 results for every distinct convolution and batch norm of ResNet-50 (last
//! stride 1, 256 × 128, batch 2; outputs subsampled) and for small edge cases (batch 1,
//! odd sizes, strides 1–3, padding 0–3, dilation, groups; stored whole). Inputs are not
//! stored: both sides compute them from the element index with one integer hash. Each
//! output (forward value, data gradient, weight gradient; batch-norm output, statistics and
//! gradients) must be within 1e-4 relative (L2) of PyTorch's. The edge cases also run with
//! non-contiguous inputs (permuted and transposed views).
//!
//! The element-wise kernels, which the same copy splits across threads from 64 Ki elements,
//! are checked on large tensors against the element-by-element result, bit for bit, on each
//! path: writing into the left or the right operand, or into a new tensor.

use burn_backend::ops::{ActivationOps, ConvOptions, FloatTensorOps, ModuleOps};
use burn_backend::{Scalar, TensorData};
use burn_flex::{Flex, FlexTensor};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

fn fixture_bytes() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/flex_ops.safetensors"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `((i + seed·1000003)·2654435761 mod 2³²)/2³¹ − 1` for the flat index `i`, as the fixture
/// script computes it.
fn hashed(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let h = (i + seed * 1_000_003).wrapping_mul(2_654_435_761) % (1u64 << 32);
            (h as f64 / 2f64.powi(31) - 1.0) as f32
        })
        .collect()
}

fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// The same logical tensor as `tensor(values, shape)`, stored with its last two axes
/// swapped (a transposed view: non-contiguous strides).
fn transposed_view(values: &[f32], shape: &[usize]) -> FlexTensor {
    let r = shape.len();
    let (a, b) = (shape[r - 2], shape[r - 1]);
    let mut swapped = vec![0.0; values.len()];
    for (block, chunk) in values.chunks(a * b).enumerate() {
        for i in 0..a {
            for j in 0..b {
                swapped[block * a * b + j * a + i] = chunk[i * b + j];
            }
        }
    }
    let mut stored = shape.to_vec();
    stored.swap(r - 2, r - 1);
    let t = tensor(swapped, &stored).transpose(r - 2, r - 1);
    assert!(!t.is_contiguous() || a == 1 || b == 1);
    t
}

fn values(t: FlexTensor) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// ‖ours − reference‖ / ‖reference‖ over `ours` subsampled every `step` elements.
fn relative_error(ours: &[f32], step: usize, reference: &[f32]) -> f64 {
    let ours: Vec<f32> = ours.iter().step_by(step).copied().collect();
    assert_eq!(ours.len(), reference.len(), "subsampled lengths");
    let diff: f64 = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let norm: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

struct Fixture<'a> {
    file: safetensors::SafeTensors<'a>,
    cases: Value,
}

impl<'a> Fixture<'a> {
    fn open(bytes: &'a [u8]) -> Fixture<'a> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
        let cases = meta.metadata().as_ref().unwrap()["cases"].clone();
        Fixture {
            file: safetensors::SafeTensors::deserialize(bytes).unwrap(),
            cases: serde_json::from_str(&cases).unwrap(),
        }
    }

    fn get(&self, name: &str) -> Vec<f32> {
        let view = self
            .file
            .tensor(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        view.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn check(&self, name: &str, ours: &[f32], step: usize, failures: &mut Vec<String>) -> f64 {
        let e = relative_error(ours, step, &self.get(name));
        if e.is_nan() || e > TOLERANCE {
            failures.push(format!("{name}: relative error {e:.2e}"));
        }
        e
    }
}

fn usize_of(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}")) as usize
}

fn conv_case(
    f: &Fixture,
    i: usize,
    case: &Value,
    contiguous: bool,
    failures: &mut Vec<String>,
) -> f64 {
    let [n, c_in, h, w, c_out, k, s, p, d, g] = [
        "n", "c_in", "h", "w", "c_out", "k", "stride", "pad", "dilation", "groups",
    ]
    .map(|key| usize_of(case, key));
    let y_shape: Vec<usize> = case["y_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let seed = 3 * i as u64;
    let x_shape = [n, c_in, h, w];
    let w_shape = [c_out, c_in / g, k, k];
    let (xv, wv) = (
        hashed(x_shape.iter().product(), seed + 1),
        hashed(w_shape.iter().product(), seed + 2),
    );
    let dyv = hashed(y_shape.iter().product(), seed + 3);
    let make = |v: &[f32], shape: &[usize]| {
        if contiguous {
            tensor(v.to_vec(), shape)
        } else {
            transposed_view(v, shape)
        }
    };
    let (x, weight, dy) = (
        make(&xv, &x_shape),
        make(&wv, &w_shape),
        make(&dyv, &y_shape),
    );
    let options = ConvOptions::new([s, s], [p, p], [d, d], g);
    let step = |name: &str| usize_of(&case["steps"], name);
    let y = values(Flex::conv2d(
        x.clone(),
        weight.clone(),
        None,
        options.clone(),
    ));
    let dx = values(Flex::conv2d_x_backward(
        x.clone(),
        weight.clone(),
        dy.clone(),
        options.clone(),
    ));
    let dw = values(Flex::conv2d_weight_backward(x, weight, dy, options));
    let worst = [
        f.check(&format!("c{i}.y"), &y, step("y"), failures),
        f.check(&format!("c{i}.dx"), &dx, step("dx"), failures),
        f.check(&format!("c{i}.dw"), &dw, step("dw"), failures),
    ];
    worst.into_iter().fold(0.0, f64::max)
}

fn bn_case(
    f: &Fixture,
    i: usize,
    case: &Value,
    contiguous: bool,
    failures: &mut Vec<String>,
) -> f64 {
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let step = usize_of(case, "step");
    let c = shape[1];
    let seed = 4 * i as u64 + 1000;
    let xv = hashed(shape.iter().product(), seed + 1);
    let gamma: Vec<f32> = hashed(c, seed + 2).into_iter().map(|v| v + 1.5).collect();
    let beta = hashed(c, seed + 3);
    let dyv = hashed(shape.iter().product(), seed + 4);
    let make = |v: &[f32]| {
        if contiguous {
            tensor(v.to_vec(), &shape)
        } else {
            transposed_view(v, &shape)
        }
    };
    let (x, dy) = (make(&xv), make(&dyv));
    let (gamma, beta) = (tensor(gamma, &[c]), tensor(beta, &[c]));
    let train = Flex::batch_norm_train(x.clone(), gamma.clone(), beta, 1e-5);
    let backward = |dy: FlexTensor| {
        Flex::batch_norm_train_backward(
            x.clone(),
            gamma.clone(),
            train.mean.clone(),
            train.variance.clone(),
            1e-5,
            dy,
        )
    };
    // A gradient held elsewhere too gets a new tensor and stays as it was; one owned alone
    // (as the graph hands it over) is written over, with the same values.
    let shared = backward(dy.clone());
    assert_eq!(
        values(dy.clone()),
        dyv,
        "b{i}: a shared output gradient was modified"
    );
    let grads = backward(dy);
    assert_eq!(
        values(shared.x_grad),
        values(grads.x_grad.clone()),
        "b{i}: the in-place and the allocating input gradients differ"
    );
    let name = |what: &str| format!("b{i}.{what}");
    let worst = [
        f.check(&name("y"), &values(train.output), step, failures),
        f.check(&name("mean"), &values(train.mean), 1, failures),
        f.check(&name("var"), &values(train.variance), 1, failures),
        f.check(&name("dx"), &values(grads.x_grad), step, failures),
        f.check(&name("dgamma"), &values(grads.gamma_grad), 1, failures),
        f.check(&name("dbeta"), &values(grads.beta_grad), 1, failures),
    ];
    worst.into_iter().fold(0.0, f64::max)
}

/// Every ResNet-50 convolution and the edge cases: forward, data and weight gradients.
#[test]
fn convolutions_and_their_gradients_match_pytorch() {
    let bytes = fixture_bytes();
    let f = Fixture::open(&bytes);
    let mut failures = Vec::new();
    let cases = f.cases["conv"].as_array().unwrap();
    assert!(cases.len() >= 30, "{} convolution cases", cases.len());
    let mut worst: f64 = 0.0;
    for (i, case) in cases.iter().enumerate() {
        worst = worst.max(conv_case(&f, i, case, true, &mut failures));
        if usize_of(&case["steps"], "y") == 1 {
            worst = worst.max(conv_case(&f, i, case, false, &mut failures));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!("convolutions: worst relative error {worst:.2e}");
}

/// Every ResNet-50 batch norm and 2-, 3- and 4-D edge cases: output, batch statistics and
/// the three gradients.
#[test]
fn batch_norm_training_matches_pytorch() {
    let bytes = fixture_bytes();
    let f = Fixture::open(&bytes);
    let mut failures = Vec::new();
    let cases = f.cases["bn"].as_array().unwrap();
    assert!(cases.len() >= 15, "{} batch-norm cases", cases.len());
    let mut worst: f64 = 0.0;
    for (i, case) in cases.iter().enumerate() {
        worst = worst.max(bn_case(&f, i, case, true, &mut failures));
        if usize_of(case, "step") == 1 {
            worst = worst.max(bn_case(&f, i, case, false, &mut failures));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!("batch norms: worst relative error {worst:.2e}");
}

/// Inference-mode batch norm (running statistics given) against its formula in f64.
#[test]
fn batch_norm_with_given_statistics_is_the_affine_formula() {
    let shape = [3usize, 4, 5, 2];
    let xv = hashed(shape.iter().product(), 7);
    let gamma = hashed(4, 8);
    let beta = hashed(4, 9);
    let mean = hashed(4, 10);
    let var: Vec<f32> = hashed(4, 11).into_iter().map(|v| v + 1.2).collect();
    let y = values(Flex::batch_norm(
        transposed_view(&xv, &shape),
        tensor(gamma.clone(), &[4]),
        tensor(beta.clone(), &[4]),
        tensor(mean.clone(), &[4]),
        tensor(var.clone(), &[4]),
        1e-5,
    ));
    let expected: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / 10 % 4;
            ((v as f64 - mean[c] as f64) / (var[c] as f64 + 1e-5).sqrt() * gamma[c] as f64
                + beta[c] as f64) as f32
        })
        .collect();
    let e = relative_error(&y, 1, &expected);
    assert!(e < 1e-6, "relative error {e:.2e}");
}

/// A large tensor (above the threading threshold, and not a multiple of the chunk size).
const LARGE: [usize; 2] = [3, 70_001];

fn large(seed: u64) -> Vec<f32> {
    hashed(LARGE[0] * LARGE[1], seed)
}

/// `f(a, b)` elementwise, computed in the test one element at a time.
fn expected(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    a.iter().zip(b).map(|(&a, &b)| f(a, b)).collect()
}

fn assert_bits(what: &str, ours: FlexTensor, expected: &[f32]) {
    let ours = values(ours);
    assert_eq!(ours.len(), expected.len(), "{what}: length");
    let differ = ours
        .iter()
        .zip(expected)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert!(differ.is_none(), "{what}: element {differ:?} differs");
}

/// Binary operations on each path: the left operand owned (written in place), only the
/// right one owned (written in place, operands kept in order), neither (a new tensor).
#[test]
fn large_elementwise_binary_operations_are_exact_on_every_path() {
    let (a, b) = (large(1), large(2));
    type Op = fn(FlexTensor, FlexTensor) -> FlexTensor;
    type Reference = fn(f32, f32) -> f32;
    let ops: [(&str, Op, Reference); 4] = [
        ("add", Flex::float_add, |a, b| a + b),
        ("sub", Flex::float_sub, |a, b| a - b),
        ("mul", Flex::float_mul, |a, b| a * b),
        ("div", Flex::float_div, |a, b| a / b),
    ];
    for (name, op, f) in ops {
        let want = expected(&a, &b, f);
        let (ta, tb) = (tensor(a.clone(), &LARGE), tensor(b.clone(), &LARGE));
        let left_owned = op(tensor(a.clone(), &LARGE), tb.clone());
        assert_bits(&format!("{name}, left owned"), left_owned, &want);
        let ta_kept = ta.clone();
        assert_bits(
            &format!("{name}, right owned"),
            op(ta_kept, tensor(b.clone(), &LARGE)),
            &want,
        );
        assert_bits(
            &format!("{name}, shared"),
            op(ta.clone(), tb.clone()),
            &want,
        );
        // The shared operands are unchanged.
        assert_bits(&format!("{name}: left operand kept"), ta, &a);
        assert_bits(&format!("{name}: right operand kept"), tb, &b);
    }
}

/// ReLU, its backward pass and a scalar multiplication, in place and into a new tensor.
#[test]
fn large_elementwise_unary_and_scalar_operations_are_exact() {
    let (x, g) = (large(3), large(4));
    let relu: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
    let shared = tensor(x.clone(), &LARGE);
    assert_bits("relu, shared input", Flex::relu(shared.clone()), &relu);
    assert_bits(
        "relu, owned input",
        Flex::relu(tensor(x.clone(), &LARGE)),
        &relu,
    );
    let backward = expected(&x, &g, |v, g| if v > 0.0 { g } else { 0.0 });
    let owned_grad = tensor(g.clone(), &LARGE);
    assert_bits(
        "relu backward, owned gradient",
        Flex::relu_backward(shared.clone(), owned_grad),
        &backward,
    );
    let shared_grad = tensor(g.clone(), &LARGE);
    assert_bits(
        "relu backward, shared",
        Flex::relu_backward(shared.clone(), shared_grad.clone()),
        &backward,
    );
    let scaled: Vec<f32> = x.iter().map(|&v| v * 0.37).collect();
    assert_bits(
        "mul_scalar, shared",
        Flex::float_mul_scalar(shared.clone(), Scalar::Float(0.37)),
        &scaled,
    );
    assert_bits(
        "mul_scalar, owned",
        Flex::float_mul_scalar(tensor(x.clone(), &LARGE), Scalar::Float(0.37)),
        &scaled,
    );
    assert_bits("input kept", shared, &x);
    assert_bits("gradient kept", shared_grad, &g);
}
