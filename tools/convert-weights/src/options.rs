//! Conversion options: input size and the preprocessing written into the file.
//!
//! ONNX files and state dicts do not say how images were prepared for the network, so the
//! converter picks the convention of the detected source (Caffe for networks with LRN,
//! torchvision otherwise) and every field can be overridden from the command line.

use alexnet::plan::{ColorOrder, Preprocess};

/// A named preprocessing convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// BGR, 0..255, mean (104, 117, 123): BVLC AlexNet, CaffeNet, the ONNX zoo.
    Caffe,
    /// RGB, /255, ImageNet mean and std: torchvision.
    Torchvision,
}

impl Convention {
    /// The preprocessing of this convention.
    pub fn preprocess(self) -> Preprocess {
        match self {
            Convention::Caffe => Preprocess::caffe(),
            Convention::Torchvision => Preprocess::torchvision(),
        }
    }
}

/// Per-field overrides of the detected preprocessing; `None` keeps the default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreprocessOptions {
    /// Start from this convention instead of the detected one.
    pub convention: Option<Convention>,
    /// Channel order.
    pub color: Option<ColorOrder>,
    /// Multiplier applied to 0..=255 pixel values.
    pub scale: Option<f32>,
    /// Per-channel mean.
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation.
    pub std: Option<[f32; 3]>,
    /// Shorter side to resize to before the centre crop (0: resize to the input size).
    pub resize: Option<u32>,
}

impl PreprocessOptions {
    /// The preprocessing to store: `detected`'s convention (or the forced one) with the
    /// overrides applied. Validity (finite, positive std, ...) is checked with the plan.
    pub fn resolve(&self, detected: Convention) -> Preprocess {
        let mut p = self.convention.unwrap_or(detected).preprocess();
        if let Some(c) = self.color {
            p.color = c;
        }
        if let Some(s) = self.scale {
            p.scale = s;
        }
        if let Some(m) = self.mean {
            p.mean = m;
        }
        if let Some(s) = self.std {
            p.std = s;
        }
        if let Some(r) = self.resize {
            p.resize_shorter = r;
        }
        p
    }
}

/// Everything that steers a conversion besides the input bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// Input `(height, width)`: required for ONNX models with a symbolic image size,
    /// checked against a fixed one, and the state-dict input size (default 224).
    pub input_size: Option<[u32; 2]>,
    /// Preprocessing overrides.
    pub preprocess: PreprocessOptions,
    /// A label file (one class name per line) to embed; its line count must equal the
    /// number of classes.
    pub labels: Option<std::path::PathBuf>,
    /// A Caffe deploy `.prototxt` describing the network of a `.caffemodel` (without
    /// one, the caffemodel's own net is converted).
    pub prototxt: Option<std::path::PathBuf>,
}
