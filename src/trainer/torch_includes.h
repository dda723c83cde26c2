// The libtorch headers the trainer uses, and nothing wider: <torch/torch.h>
// (the whole C++ frontend, nn modules included) would double compile time.
// Included only by trainer.cc, data_parallel.cc and torch_io.cc, and used as
// their precompiled header.
#pragma once

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/script.h>
#include <torch/serialize/archive.h>
#include <torch/version.h>
