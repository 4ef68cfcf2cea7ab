//! The optimizer from the plan, with every hyper-parameter set explicitly
//! (burn's defaults differ from Keras's: RMSprop alpha 0.99, momentum 0.9,
//! epsilon 1e-5; SGD momentum dampening 0.1).

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, GradientsParams, Optimizer, RmsProp, RmsPropConfig, Sgd,
    SgdConfig,
};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder, RecorderError};
use burn::tensor::backend::AutodiffBackend;

use crate::config::spec::OptimizerSpec;
use crate::model::Net;

type M<B> = Net<B>;

/// One of the supported optimizers over our network.
#[derive(Clone)]
pub enum Optim<B: AutodiffBackend> {
    RmsProp(OptimizerAdaptor<RmsProp, M<B>, B>),
    Adam(OptimizerAdaptor<Adam, M<B>, B>),
    AdamW(OptimizerAdaptor<AdamW, M<B>, B>),
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M<B>, B>),
}

fn clipping(norm: Option<f64>, value: Option<f64>) -> Option<GradientClippingConfig> {
    match (norm, value) {
        (Some(n), _) => Some(GradientClippingConfig::Norm(n as f32)),
        (None, Some(v)) => Some(GradientClippingConfig::Value(v as f32)),
        (None, None) => None,
    }
}

fn decay(wd: f64) -> Option<WeightDecayConfig> {
    (wd > 0.0).then(|| WeightDecayConfig::new(wd as f32))
}

impl<B: AutodiffBackend> Optim<B> {
    pub fn new(spec: &OptimizerSpec) -> Optim<B> {
        match spec {
            OptimizerSpec::Rmsprop(s) => Optim::RmsProp(
                RmsPropConfig::new()
                    .with_alpha(s.rho as f32)
                    .with_momentum(s.momentum as f32)
                    .with_epsilon(s.epsilon as f32)
                    .with_centered(s.centered)
                    .with_weight_decay(decay(s.weight_decay))
                    .with_grad_clipping(clipping(s.clip_norm, s.clip_value))
                    .init(),
            ),
            OptimizerSpec::Adam(s) => Optim::Adam(
                AdamConfig::new()
                    .with_beta_1(s.beta_1 as f32)
                    .with_beta_2(s.beta_2 as f32)
                    .with_epsilon(s.epsilon as f32)
                    .with_weight_decay(decay(s.weight_decay))
                    .with_grad_clipping(clipping(s.clip_norm, s.clip_value))
                    .init(),
            ),
            OptimizerSpec::Adamw(s) => Optim::AdamW(
                AdamWConfig::new()
                    .with_beta_1(s.beta_1 as f32)
                    .with_beta_2(s.beta_2 as f32)
                    .with_epsilon(s.epsilon as f32)
                    .with_weight_decay(s.weight_decay as f32)
                    .with_grad_clipping(clipping(s.clip_norm, s.clip_value))
                    .init(),
            ),
            OptimizerSpec::Sgd(s) => {
                let momentum = (s.momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(s.momentum)
                        .with_dampening(0.0)
                        .with_nesterov(s.nesterov)
                });
                Optim::Sgd(
                    SgdConfig::new()
                        .with_momentum(momentum)
                        .with_weight_decay(decay(s.weight_decay))
                        .with_gradient_clipping(clipping(s.clip_norm, s.clip_value))
                        .init(),
                )
            }
        }
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64, model: M<B>, grads: GradientsParams) -> M<B> {
        match self {
            Optim::RmsProp(o) => o.step(lr, model, grads),
            Optim::Adam(o) => o.step(lr, model, grads),
            Optim::AdamW(o) => o.step(lr, model, grads),
            Optim::Sgd(o) => o.step(lr, model, grads),
        }
    }

    /// The optimizer state (moments, momentum buffers) as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecorderError> {
        let rec = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        match self {
            Optim::RmsProp(o) => Recorder::<B>::record(&rec, o.to_record(), ()),
            Optim::Adam(o) => Recorder::<B>::record(&rec, o.to_record(), ()),
            Optim::AdamW(o) => Recorder::<B>::record(&rec, o.to_record(), ()),
            Optim::Sgd(o) => Recorder::<B>::record(&rec, o.to_record(), ()),
        }
    }

    /// Restore state saved by [`Optim::to_bytes`] for the same optimizer type.
    pub fn load_bytes(self, bytes: Vec<u8>, device: &B::Device) -> Result<Optim<B>, RecorderError> {
        let rec = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        Ok(match self {
            Optim::RmsProp(o) => {
                Optim::RmsProp(o.load_record(Recorder::<B>::load(&rec, bytes, device)?))
            }
            Optim::Adam(o) => Optim::Adam(o.load_record(Recorder::<B>::load(&rec, bytes, device)?)),
            Optim::AdamW(o) => {
                Optim::AdamW(o.load_record(Recorder::<B>::load(&rec, bytes, device)?))
            }
            Optim::Sgd(o) => Optim::Sgd(o.load_record(Recorder::<B>::load(&rec, bytes, device)?)),
        })
    }
}
