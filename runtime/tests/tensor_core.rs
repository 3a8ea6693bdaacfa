//! The tensor core: construction, dtype conversion, reshapes, devices, and their typed errors.

use kiln_runtime::{DType, Device, Error, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-4.0f32..4.0)).collect()
}

#[test]
fn dtype_round_trip_stays_within_half_an_ulp() {
    let data = random(1000, 1);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let t = Tensor::from_f32(data.clone(), &[10, 100], dtype, Device::Cpu).unwrap();
        assert_eq!(t.dtype(), dtype);
        let back = t.to_vec_f32().unwrap();
        for (i, (&x, &y)) in data.iter().zip(&back).enumerate() {
            // Round to nearest: relative error at most the unit roundoff (values here are normal).
            let bound = dtype.epsilon() * x.abs();
            assert!((x - y).abs() <= bound, "{dtype} element {i}: {x} stored as {y}");
        }
        // Converting to f32 and back to the same dtype is exact.
        let again = t.to_dtype(DType::F32).unwrap().to_dtype(dtype).unwrap();
        assert_eq!(again.to_vec_f32().unwrap(), back);
    }
}

#[test]
fn reshape_shares_elements_and_checks_the_count() {
    let data = random(24, 2);
    let t = Tensor::from_f32(data.clone(), &[2, 3, 4], DType::F32, Device::Cpu).unwrap();
    let r = t.reshape(&[6, 4]).unwrap();
    assert_eq!(r.dims(), &[6, 4]);
    assert_eq!(r.to_vec_f32().unwrap(), data);
    assert!(matches!(t.reshape(&[5, 5]), Err(Error::Shape { op: "reshape", .. })));
}

#[test]
fn wrong_element_count_is_a_typed_error() {
    let err = Tensor::from_f32(random(5, 3), &[2, 3], DType::F16, Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::ElementCount { len: 5, .. }), "{err}");
    assert!(err.to_string().contains("[2, 3]"), "{err}");
}

#[test]
fn dims_n_destructures_or_names_the_op() {
    let t = Tensor::from_f32(random(24, 4), &[1, 2, 3, 4], DType::BF16, Device::Cpu).unwrap();
    let [n, h, w, c] = t.dims_n::<4>("test").unwrap();
    assert_eq!((n, h, w, c), (1, 2, 3, 4));
    let err = t.dims_n::<3>("group_norm").unwrap_err();
    assert!(matches!(err, Error::Rank { op: "group_norm", expected: 3, .. }), "{err}");
}

#[test]
fn cuda_without_the_backend_is_a_typed_error_not_a_panic() {
    let t = Tensor::from_f32(random(4, 5), &[4], DType::F32, Device::Cpu).unwrap();
    assert!(t.to_device(Device::Cpu).is_ok());
    let err = match Device::cuda(0) {
        Ok(_) => {
            // With the `cuda` feature on a machine with a GPU: runtime/tests/cuda_ops.rs covers it.
            eprintln!("a CUDA device is present; the no-GPU error path is not exercised here");
            return;
        }
        Err(err) => err,
    };
    if cfg!(feature = "cuda") {
        assert!(matches!(err, Error::CudaUnavailable { ordinal: 0, .. }), "{err}");
    } else {
        assert!(matches!(err, Error::CudaNotBuilt), "{err}");
    }
    assert!(t.to_device(Device::Cuda(0)).is_err());
}

#[test]
fn devices_and_dtypes_parse_from_the_command_line_spelling() {
    assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
    assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
    assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
    assert!("gpu".parse::<Device>().is_err());
    assert!("cuda:x".parse::<Device>().is_err());
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        assert_eq!(dtype.as_str().parse::<DType>().unwrap(), dtype);
    }
    assert!("f64".parse::<DType>().is_err());
}
