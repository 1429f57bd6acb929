//! # scal-data
//!
//! What a ReID model reads: image folders listed in a fixed order, and the test-time
//! transform users know from torchvision (decode → RGB → bilinear resize → [0, 1] →
//! ImageNet mean/std), producing channel-first `f32` buffers ready to become a tensor.
//! Free of Burn: the caller makes tensors.

mod error;
mod folder;
mod transform;

pub use error::DataError;
pub use folder::{IMAGE_EXTENSIONS, ImageListing, is_image_file, list_images};
pub use transform::{IMAGENET_MEAN, IMAGENET_STD, TestTransform};
