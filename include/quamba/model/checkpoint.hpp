// quamba/model/checkpoint.hpp: model files on the host.
//   quamba/model/hf_model.hpp              Hugging Face Mamba checkpoint dir <-> reference::ModelWeights
//                                          (load_hf_model, save_hf_model)
//   quamba/model/quantized_checkpoint.hpp  reference::QuantizedModel <-> one "quamba-w8a8" safetensors
//                                          file (save_quantized, load_quantized; naming scheme there)
#pragma once

#include "quamba/model/hf_model.hpp"
#include "quamba/model/quantized_checkpoint.hpp"
