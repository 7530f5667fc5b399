// HR attention-upscale stage of RETHINED, uint8 in -> uint8 out, one thread per HR pixel.
//
// Same math as rethined_engine/deploy/host.py::upscale_hr (the reference it is tested against):
// a hole pixel p of token i (token = (scale*patch)^2 HR pixels) becomes
//     clamp(up(p) + sum_k weight[i,k] * (y(q_k) - up(q_k)) + fine_weight[i,k] * (y(q_k) - B(y)(q_k)), 0, 1)
// where y = image / 255, up = bilinear(lr_result) with half-pixel centres, q_k = the pixel at p's offset
// inside source token index[i,k], B = the 3x3 binomial blur inside that token (its edge pixels
// replicated). Sources with a nonzero weight are known tokens lying wholly inside the image (the LR
// network zeroes every other weight), so every pixel read is a known pixel of `image`. Known pixels are
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

// 3x3 binomial blur of image / 255 (HWC uint8, row stride W) at offset (oy, ox) of the span x span token
// whose top-left pixel is (y0, x0), the token's edge pixels replicated. Integer taps (1 2 1) x (1 2 1)
// summed exactly, scaled once by 1 / (16 * 255).
__device__ __forceinline__ void token_blur_rgb(const unsigned char* __restrict__ image, int W, int span,
                                               int y0, int x0, int oy, int ox, float rgb[3]) {
    const int taps[3] = {1, 2, 1};
    int sum[3] = {0, 0, 0};
#pragma unroll
    for (int dy = 0; dy < 3; ++dy) {
        const int ry = y0 + min(max(oy + dy - 1, 0), span - 1);
#pragma unroll
        for (int dx = 0; dx < 3; ++dx) {
            const int rx = x0 + min(max(ox + dx - 1, 0), span - 1);
            const long long q = (long long)ry * W + rx;
            const int t = taps[dy] * taps[dx];
#pragma unroll
            for (int c = 0; c < 3; ++c) sum[c] += t * image[3 * q + c];
        }
    }
    const float norm = 1.0f / (16.0f * 255.0f);
#pragma unroll
    for (int c = 0; c < 3; ++c) rgb[c] = sum[c] * norm;
}

// image, out: (H, W, 3) uint8; mask: (H, W) uint8, nonzero = hole; lr: (3, h, w) float32 with
// h = grid_h * patch, w = grid_w * patch; weight, fine_weight: (grid_h * grid_w, K) float32; index: same, int32.
__global__ void hr_upscale_u8(const unsigned char* __restrict__ image, const unsigned char* __restrict__ mask,
                              const float* __restrict__ lr, const float* __restrict__ weight,
                              const float* __restrict__ fine_weight, const int* __restrict__ index,
                              unsigned char* __restrict__ out,
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
            const float wk = weight[token * K + k], fk = fine_weight[token * K + k];
            if (wk == 0.0f && fk == 0.0f) continue;
            const int src = index[token * K + k];
            const int y0 = (src / grid_w) * span, x0 = (src % grid_w) * span;
            const int sy = y0 + oy, sx = x0 + ox;
            float up[3], blur[3] = {0.0f, 0.0f, 0.0f};
            bilinear_rgb(lr, h, w, inv_scale, sy, sx, up);
            if (fk != 0.0f) token_blur_rgb(image, W, span, y0, x0, oy, ox, blur);
            const long long q = (long long)sy * W + sx;
#pragma unroll
            for (int c = 0; c < 3; ++c) {
                const float v = image[3 * q + c] * (1.0f / 255.0f);
                acc[c] += wk * (v - up[c]) + fk * (v - blur[c]);
            }
        }
    }
#pragma unroll
    for (int c = 0; c < 3; ++c) out[3 * p + c] = (unsigned char)rintf(fminf(fmaxf(acc[c], 0.0f), 1.0f) * 255.0f);
}

}  // extern "C"
