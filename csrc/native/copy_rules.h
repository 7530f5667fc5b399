// Rules shared by the native kernels that cross-fade copied tokens (rethined_native.cpp at HR, lr_copy.cpp at LR).
// The torch model is the specification: rethined_engine/model/patchmatch.py.
#pragma once

#include <algorithm>

namespace rethined {

constexpr float kCopyFloor = 1e-3f;   // model.patchmatch.COPY_FLOOR: weight of a sample whose source is not known

// Weight of a token's copy at `offset` px from the token's first row (or column): `model.patchmatch.feather_weight`
// (1 inside the token, falling linearly to 0 over `feather` px either side of its edges; feather 0: 1 inside only).
inline float feather_weight(float offset, int span, int feather) {
    if (feather == 0) return offset > -1.0f && span - offset > 0.0f ? 1.0f : 0.0f;
    const float rising = offset + feather + 0.5f, falling = span + feather - 0.5f - offset;
    return std::min(std::max(std::min(rising, falling) / (2.0f * feather), 0.0f), 1.0f);
}

}  // namespace rethined
