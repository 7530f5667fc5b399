// The coarse CNN's decoder joins in C++ (cnn_ops.cpp), registered on the rethined_engine._native module.
#pragma once

#include <pybind11/pybind11.h>

namespace rethined {

void register_cnn_ops(pybind11::module_& m);

}  // namespace rethined
