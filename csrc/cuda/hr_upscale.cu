// HR attention-upscale stage of RETHINED, uint8 in -> uint8 out, one thread per HR pixel.
//
// Same math as rethined_engine/deploy/host.py::upscale_hr (the reference it is tested against):
// a hole pixel p of token i (token = (scale*patch)^2 HR pixels) becomes
//     clamp(up(p) + sum_k weight[i,k] * (y(q_k) - up(q_k)) + fine_weight[i,k] * (y(q_k) - B(y)(q_k)), 0, 1)
// where y = image / 255, up = bilinear(lr_result) with half-pixel centres, q_k = the pixel at p's offset
// inside source token index[i,k], B = the 3x3 binomial blur inside that token (its edge pixels
// replicated). Sources with a nonzero weight are known tokens lying wholly inside the image (the LR
// network zeroes every other weight), so every pixel read is a known pixel of `image`. Known pixels are
// copied. With feather > 0 (HR px; one source per token, K = 1, no fine band), hole pixels within feather
// px of a token edge take the cross-faded texture of the neighbouring copies instead of their own copy's
// (`feathered_texture`; host.py::feathered_texture, torch reference `model.upscale.feathered_texture`).
// Plain C for NVRTC/pycuda SourceModule/CuPy RawKernel: no includes, extern "C" names.

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

#define COPY_FLOOR 1e-3f   // model.patchmatch.COPY_FLOOR: weight of a sample whose source token is not known

// Weight of a token's copy at `offset` px from the token's first row (or column), feather > 0:
// `model.patchmatch.feather_weight`.
__device__ __forceinline__ float feather_weight(float offset, int span, int feather) {
    const float rising = offset + feather + 0.5f, falling = span + feather - 0.5f - offset;
    return fminf(fmaxf(fminf(rising, falling) / (2.0f * feather), 0.0f), 1.0f);
}

// An offset (px) from a token's first row or column, reflected into the token about the edge it lies past.
__device__ __forceinline__ int mirror_offset(int offset, int span) {
    return offset >= span ? 2 * span - 1 - offset : (offset < 0 ? -1 - offset : offset);
}

// The copied texture at hole pixel (y, x): the copies of its token and of the (up to) three neighbours on its
// side of the token's centre lines (a token with weight 0 keeps itself), weighted by feather_weight along
// both axes times whether the pixel read is in a known token (+ COPY_FLOOR); the weighted sum of image / 255 -
// bilinear(lr) over the root of the summed squared weights, the weights of copies with one offset added first
// (`copy_tokens(keep_contrast=True)`). Each distinct pixel read is sampled once. reflect (`hr_fade_reflect`,
// `copy_tokens(reflect_unknown=True)`): where a copy's read lands in a token not known, the pixel mirrored about
// its source's edge is read instead (if known).
__device__ __forceinline__ void feathered_texture(const unsigned char* __restrict__ image, int W,
                                                          const float* __restrict__ lr, int h, int w, float inv_scale,
                                                          const float* __restrict__ weight,
                                                          const int* __restrict__ index,
                                                          const unsigned char* __restrict__ known, int grid_h,
                                                          int grid_w, int span, int feather, int reflect, int y,
                                                          int x, float rgb[3]) {
    const int ty = y / span, tx = x / span, oy = y - ty * span, ox = x - tx * span;
    const int side_y = span / 2 - oy > 0 ? -1 : 1, side_x = span / 2 - ox > 0 ? -1 : 1;
    const int max_y = grid_h * span - 1, max_x = grid_w * span - 1;
    int shift_y[4], shift_x[4], n = 0, read_y[4], read_x[4], reads = 0;
    float weights[4], read_weights[4], total[3] = {0.0f, 0.0f, 0.0f};
    for (int ny = 0; ny != 2 * side_y; ny += side_y) {
        for (int nx = 0; nx != 2 * side_x; nx += side_x) {
            const int uy = ty + ny, ux = tx + nx;
            if (uy < 0 || uy >= grid_h || ux < 0 || ux >= grid_w) continue;
            const float fw = feather_weight((float)(oy - ny * span), span, feather)
                             * feather_weight((float)(ox - nx * span), span, feather);
            if (fw == 0.0f) continue;
            const int u = uy * grid_w + ux, su = weight[u] != 0.0f ? index[u] : u;
            const int dy = (su / grid_w - uy) * span, dx = (su % grid_w - ux) * span;
            int qy = min(max(y + dy, 0), max_y), qx = min(max(x + dx, 0), max_x);
            bool source_known = known[(qy / span) * grid_w + qx / span] != 0;
            if (!source_known && reflect) {
                const int off_y = oy - ny * span, off_x = ox - nx * span;
                const int my = min(max(y + dy - (off_y - mirror_offset(off_y, span)), 0), max_y);
                const int mx = min(max(x + dx - (off_x - mirror_offset(off_x, span)), 0), max_x);
                if (known[(my / span) * grid_w + mx / span] != 0) { qy = my; qx = mx; source_known = true; }
            }
            const float wk = fw * ((source_known ? 1.0f : 0.0f) + COPY_FLOOR);
            if (source_known) {      // each distinct pixel read is sampled once
                int r = 0;
                while (r < reads && (read_y[r] != qy || read_x[r] != qx)) ++r;
                if (r == reads) { read_y[reads] = qy; read_x[reads] = qx; read_weights[reads] = 0.0f; ++reads; }
                read_weights[r] += wk;
            }
            int k = 0;
            while (k < n && (shift_y[k] != dy || shift_x[k] != dx)) ++k;
            if (k == n) { shift_y[n] = dy; shift_x[n] = dx; weights[n] = 0.0f; ++n; }
            weights[k] += wk;
        }
    }
    for (int r = 0; r < reads; ++r) {
        float up[3];
        bilinear_rgb(lr, h, w, inv_scale, read_y[r], read_x[r], up);
        const long long q = (long long)read_y[r] * W + read_x[r];
#pragma unroll
        for (int c = 0; c < 3; ++c) total[c] += read_weights[r] * (image[3 * q + c] * (1.0f / 255.0f) - up[c]);
    }
    float weight_squares = 0.0f;
    for (int k = 0; k < n; ++k) weight_squares += weights[k] * weights[k];
    const float norm = rsqrtf(weight_squares);
#pragma unroll
    for (int c = 0; c < 3; ++c) rgb[c] = total[c] * norm;
}

// image, out: (H, W, 3) uint8; mask: (H, W) uint8, nonzero = hole; lr: (3, h, w) float32 with
// h = grid_h * patch, w = grid_w * patch; weight, fine_weight: (grid_h * grid_w, K) float32; index: same, int32;
// known: (grid_h * grid_w) uint8, nonzero = a token wholly inside the image without a hole pixel (read only
// with feather > 0); feather: HR px, 0..span / 2 (> 0: K = 1, fine_weight not read: one band); reflect: nonzero =
// `feathered_texture`'s mirrored reads (`ModelConfig.hr_fade_reflect`).
__global__ void hr_upscale_u8(const unsigned char* __restrict__ image, const unsigned char* __restrict__ mask,
                              const float* __restrict__ lr, const float* __restrict__ weight,
                              const float* __restrict__ fine_weight, const int* __restrict__ index,
                              const unsigned char* __restrict__ known, unsigned char* __restrict__ out,
                              int H, int W, int scale, int patch, int grid_h, int grid_w, int K, int feather,
                              int reflect) {
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
    const bool interior = oy >= feather && span - feather - oy > 0 && ox >= feather && span - feather - ox > 0;
    if (scale > 1 && !interior) {      // feather > 0 and near a token edge: the cross-faded texture
        if (weight[token] != 0.0f) {
            float texture[3];
            feathered_texture(image, W, lr, h, w, inv_scale, weight, index, known, grid_h, grid_w, span, feather,
                              reflect, y, x, texture);
#pragma unroll
            for (int c = 0; c < 3; ++c) acc[c] += weight[token] * texture[c];
        }
    } else if (scale > 1) {
        for (int k = 0; k < K; ++k) {
            const float wk = weight[token * K + k], fk = feather > 0 ? 0.0f : fine_weight[token * K + k];
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
