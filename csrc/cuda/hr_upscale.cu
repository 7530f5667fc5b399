// HR attention-upscale stage of RETHINED, uint8 in -> uint8 out, one thread per HR pixel.
//
// Same math as rethined_engine/deploy/host.py::upscale_hr (the reference it is tested against):
// a hole pixel p of token i (token = (scale*patch)^2 HR pixels) becomes
//     clamp(up(p) + sum_k weight[i,k] * (image(q_k) - up(q_k)), 0, 1)
// where up = bilinear(lr_result) with half-pixel centres, q_k = the pixel at p's offset inside source
// token index[i,k]. Sources with weight != 0 are known tokens lying wholly inside the image (the LR
// network zeroes every other weight), so q_k is always a known pixel of `image`. Known pixels are
// copied. Plain C for NVRTC/pycuda SourceModule/CuPy RawKernel: no includes, extern "C" names.

extern "C" {

__device__ __forceinline__ void bilinear_rgb(const float* __restrict__ lr, int h, int w, float inv_scale,
                                             int y, int x, float rgb[3]) {
    float sy = fmaxf((y + 0.5f) * inv_scale - 0.5f, 0.0f);
    float sx = fmaxf((x + 0.5f) * inv_scale - 0.5f, 0.0f);
    int y0 = (int)sy, x0 = (int)sx;           // sy, sx >= 0: truncation is floor
    int y1 = min(y0 + 1, h - 1), x1 = min(x0 + 1, w - 1);
    float ly = sy - y0, lx = sx - x0;
    const int plane = h * w;
#pragma unroll
    for (int c = 0; c < 3; ++c) {
        const float* p = lr + c * plane;
        float top = p[y0 * w + x0] * (1.0f - lx) + p[y0 * w + x1] * lx;
        float bottom = p[y1 * w + x0] * (1.0f - lx) + p[y1 * w + x1] * lx;
        rgb[c] = top * (1.0f - ly) + bottom * ly;
    }
}

// image, out: (H, W, 3) uint8; mask: (H, W) uint8, nonzero = hole; lr: (3, h, w) float32 with
// h = grid_h * patch, w = grid_w * patch; weight: (grid_h * grid_w, K) float32; index: same, int32.
__global__ void hr_upscale_u8(const unsigned char* __restrict__ image, const unsigned char* __restrict__ mask,
                              const float* __restrict__ lr, const float* __restrict__ weight,
                              const int* __restrict__ index, unsigned char* __restrict__ out,
                              int H, int W, int scale, int patch, int grid_h, int grid_w, int K) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= W || y >= H) return;
    const long long p = (long long)y * W + x;
    if (!mask[p]) {
        out[3 * p] = image[3 * p];
        out[3 * p + 1] = image[3 * p + 1];
        out[3 * p + 2] = image[3 * p + 2];
        return;
    }
    const int span = scale * patch;
    const int h = grid_h * patch, w = grid_w * patch;
    const int ty = y / span, tx = x / span, oy = y - ty * span, ox = x - tx * span;
    const int token = ty * grid_w + tx;
    const float inv_scale = 1.0f / (float)scale;
    float acc[3];
    bilinear_rgb(lr, h, w, inv_scale, y, x, acc);
    if (scale > 1) {
        for (int k = 0; k < K; ++k) {
            const float wk = weight[token * K + k];
            if (wk == 0.0f) continue;
            const int src = index[token * K + k];
            const int sy = (src / grid_w) * span + oy, sx = (src % grid_w) * span + ox;
            float up[3];
            bilinear_rgb(lr, h, w, inv_scale, sy, sx, up);
            const long long q = (long long)sy * W + sx;
#pragma unroll
            for (int c = 0; c < 3; ++c) acc[c] += wk * (image[3 * q + c] / 255.0f - up[c]);
        }
    }
#pragma unroll
    for (int c = 0; c < 3; ++c) out[3 * p + c] = (unsigned char)rintf(fminf(fmaxf(acc[c], 0.0f), 1.0f) * 255.0f);
}

}  // extern "C"
