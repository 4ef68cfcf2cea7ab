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

use crate::model::Net;
use crate::plan::{Algorithm, Clipping, OptimizerPlan};

type M<B> = Net<B>;

/// One of the supported optimizers over our network.
#[derive(Clone)]
pub enum Optim<B: AutodiffBackend> {
    RmsProp(OptimizerAdaptor<RmsProp, M<B>, B>),
    Adam(OptimizerAdaptor<Adam, M<B>, B>),
    AdamW(OptimizerAdaptor<AdamW, M<B>, B>),
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M<B>, B>),
}

fn clipping(c: Option<Clipping>) -> Option<GradientClippingConfig> {
    c.map(|c| match c {
        Clipping::Norm(n) => GradientClippingConfig::Norm(n as f32),
        Clipping::Value(v) => GradientClippingConfig::Value(v as f32),
    })
}

fn decay(wd: f64) -> Option<WeightDecayConfig> {
    (wd > 0.0).then(|| WeightDecayConfig::new(wd as f32))
}

impl<B: AutodiffBackend> Optim<B> {
    pub fn new(plan: &OptimizerPlan) -> Optim<B> {
        let (wd, clip) = (plan.weight_decay, plan.clipping);
        match plan.algorithm {
            Algorithm::Rmsprop {
                rho,
                momentum,
                epsilon,
                centered,
            } => Optim::RmsProp(
                RmsPropConfig::new()
                    .with_alpha(rho as f32)
                    .with_momentum(momentum as f32)
                    .with_epsilon(epsilon as f32)
                    .with_centered(centered)
                    .with_weight_decay(decay(wd))
                    .with_grad_clipping(clipping(clip))
                    .init(),
            ),
            Algorithm::Adam {
                beta_1,
                beta_2,
                epsilon,
            } => Optim::Adam(
                AdamConfig::new()
                    .with_beta_1(beta_1 as f32)
                    .with_beta_2(beta_2 as f32)
                    .with_epsilon(epsilon as f32)
                    .with_weight_decay(decay(wd))
                    .with_grad_clipping(clipping(clip))
                    .init(),
            ),
            Algorithm::AdamW {
                beta_1,
                beta_2,
                epsilon,
            } => Optim::AdamW(
                AdamWConfig::new()
                    .with_beta_1(beta_1 as f32)
                    .with_beta_2(beta_2 as f32)
                    .with_epsilon(epsilon as f32)
                    .with_weight_decay(wd as f32)
                    .with_grad_clipping(clipping(clip))
                    .init(),
            ),
            Algorithm::Sgd { momentum, nesterov } => {
                let momentum = (momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov)
                });
                Optim::Sgd(
                    SgdConfig::new()
                        .with_momentum(momentum)
                        .with_weight_decay(decay(wd))
                        .with_gradient_clipping(clipping(clip))
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
