//! Loading of TensorFlow.js weight files: a JSON manifest plus the concatenated
//! binary data, optionally uint8/uint16-quantised. All values are dequantised to
//! `f32` once, at load time.

use std::collections::HashMap;

use serde::Deserialize;

use crate::ops::{Conv, Depthwise, SeparableConv};
use crate::VisionError;

#[derive(Deserialize)]
struct Group {
    weights: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<Quantization>,
}

#[derive(Deserialize)]
struct Quantization {
    dtype: String,
    #[serde(default)]
    scale: f32,
    #[serde(default)]
    min: f32,
}

/// All tensors of one model, by name.
pub(crate) struct WeightMap {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl WeightMap {
    /// Parses a manifest and decodes `data`, which must be exactly as long as the
    /// manifest describes.
    pub(crate) fn parse(manifest: &[u8], data: &[u8]) -> Result<WeightMap, VisionError> {
        let groups: Vec<Group> = serde_json::from_slice(manifest)
            .map_err(|e| VisionError::BadManifest(e.to_string()))?;
        let mut tensors = HashMap::new();
        let mut offset = 0usize;
        for entry in groups.into_iter().flat_map(|g| g.weights) {
            if entry.dtype != "float32" {
                return Err(VisionError::BadManifest(format!(
                    "tensor {:?} has unsupported dtype {:?}",
                    entry.name, entry.dtype
                )));
            }
            let count = entry
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= 1 << 28)
                .ok_or_else(|| {
                    VisionError::BadManifest(format!("tensor {:?} too large", entry.name))
                })?;
            let width = match &entry.quantization {
                None => 4,
                Some(q) if q.dtype == "uint8" => 1,
                Some(q) if q.dtype == "uint16" => 2,
                Some(q) => {
                    return Err(VisionError::BadManifest(format!(
                        "tensor {:?} has unsupported quantization {:?}",
                        entry.name, q.dtype
                    )))
                }
            };
            let end = offset + count * width;
            let Some(bytes) = data.get(offset..end) else {
                return Err(VisionError::WeightsLength {
                    expected: end,
                    actual: data.len(),
                });
            };
            let values: Vec<f32> = match &entry.quantization {
                None => bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Some(q) if width == 1 => bytes
                    .iter()
                    .map(|&v| f32::from(v) * q.scale + q.min)
                    .collect(),
                Some(q) => bytes
                    .chunks_exact(2)
                    .map(|b| f32::from(u16::from_le_bytes([b[0], b[1]])) * q.scale + q.min)
                    .collect(),
            };
            if values.iter().any(|v| !v.is_finite()) {
                return Err(VisionError::BadManifest(format!(
                    "tensor {:?} has non-finite values",
                    entry.name
                )));
            }
            tensors.insert(entry.name, (entry.shape, values));
            offset = end;
        }
        if offset != data.len() {
            return Err(VisionError::WeightsLength {
                expected: offset,
                actual: data.len(),
            });
        }
        Ok(WeightMap { tensors })
    }

    /// The values of tensor `name`, which must have exactly `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, VisionError> {
        let (actual, values) = self
            .tensors
            .get(name)
            .ok_or_else(|| VisionError::MissingTensor(name.to_owned()))?;
        if actual != shape {
            return Err(VisionError::TensorShape {
                name: name.to_owned(),
                expected: shape.to_vec(),
                actual: actual.clone(),
            });
        }
        Ok(values.clone())
    }

    /// A `k x k` convolution `{prefix}/filters` + `{prefix}/bias`.
    pub(crate) fn conv(
        &self,
        prefix: &str,
        k: usize,
        cin: usize,
        cout: usize,
    ) -> Result<Conv, VisionError> {
        let filters = self.get(&format!("{prefix}/filters"), &[k, k, cin, cout])?;
        let bias = self.get(&format!("{prefix}/bias"), &[cout])?;
        Ok(Conv::new(&filters, [k, k, cin, cout], bias))
    }

    /// A 3x3 depthwise separable convolution `{prefix}/depthwise_filter`,
    /// `{prefix}/pointwise_filter`, `{prefix}/bias`.
    pub(crate) fn separable(
        &self,
        prefix: &str,
        cin: usize,
        cout: usize,
    ) -> Result<SeparableConv, VisionError> {
        let dw = self.get(&format!("{prefix}/depthwise_filter"), &[3, 3, cin, 1])?;
        let pw = self.get(&format!("{prefix}/pointwise_filter"), &[1, 1, cin, cout])?;
        let bias = self.get(&format!("{prefix}/bias"), &[cout])?;
        Ok(SeparableConv {
            depthwise: Depthwise::new(dw, 3, cin),
            pointwise: Conv::new(&pw, [1, 1, cin, cout], bias),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantises_uint8_and_reads_float32() {
        let manifest = br#"[{"paths":["x.bin"],"weights":[
            {"name":"a","shape":[2],"dtype":"float32","quantization":{"dtype":"uint8","scale":0.5,"min":-1.0}},
            {"name":"b","shape":[1],"dtype":"float32"}]}]"#;
        let mut data = vec![0u8, 4];
        data.extend_from_slice(&2.5f32.to_le_bytes());
        let map = WeightMap::parse(manifest, &data).unwrap();
        assert_eq!(map.get("a", &[2]).unwrap(), vec![-1.0, 1.0]);
        assert_eq!(map.get("b", &[1]).unwrap(), vec![2.5]);
        assert!(matches!(
            map.get("b", &[2]),
            Err(VisionError::TensorShape { .. })
        ));
        assert!(matches!(
            map.get("c", &[1]),
            Err(VisionError::MissingTensor(_))
        ));
        assert!(matches!(
            WeightMap::parse(manifest, &data[..5]),
            Err(VisionError::WeightsLength {
                expected: 6,
                actual: 5
            })
        ));
        let mut long = data.clone();
        long.push(0);
        assert!(matches!(
            WeightMap::parse(manifest, &long),
            Err(VisionError::WeightsLength { .. })
        ));
        assert!(matches!(
            WeightMap::parse(b"{}", &data),
            Err(VisionError::BadManifest(_))
        ));
    }
}
