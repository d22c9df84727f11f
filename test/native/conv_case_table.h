// GENERATED from test/conv_cases.json by `node --import tsx test/conv_cases.ts --write`: edit the JSON, not
// this file (test/conv_cases.test.ts fails when the two differ). The one table of convolution cases, read
// by the native tests (conv_cases.h), the CUDA tests (test/cuda) and the WebAssembly tests (the JSON).
// Each row reads both as a conv3d (output_padding ignored) and as a conv_transpose3d of the same fields.
#pragma once
#include <vector>

namespace vxtest {

struct ConvCase {
  const char* name;
  int n, cin, cout;
  int id, ih, iw;
  int kd, kh, kw;
  int sd, sh, sw;
  int pd, ph, pw;
  int opd, oph, opw;  // conv_transpose3d only
  bool small;         // cheap enough for finite differences
};

// clang-format off
inline const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
    // name                        n  ci  co  id  ih  iw  kd  kh  kw  sd  sh  sw  pd  ph  pw opd oph opw  small
    {"pointwise_cin1_cout2",       1,  1,  2,  3,  4,  5,  1,  1,  1,  1,  1,  1,  0,  0,  0,  0,  0,  0, true},
    {"k3_s1_p1",                   2,  2,  3,  4,  3,  5,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, true},
    {"k3_s2_p1_op1",               1,  3,  2,  5,  4,  3,  3,  3,  3,  2,  2,  2,  1,  1,  1,  1,  0,  1, true},
    {"k2_s2_p0_op1",               2,  2,  3,  4,  3,  5,  2,  2,  2,  2,  2,  2,  0,  0,  0,  0,  1,  1, true},
    {"k123_s121_p011",             2,  3,  2,  5,  6,  4,  1,  2,  3,  1,  2,  1,  0,  1,  1,  0,  1,  0, true},
    {"k3_kernel_exceeds_input",    1,  2,  3,  2,  1,  3,  3,  3,  3,  1,  2,  1,  1,  1,  1,  0,  1,  0, true},
    {"k1_s2_op1",                  1,  3,  5,  5,  6,  7,  1,  1,  1,  2,  2,  2,  0,  0,  0,  1,  1,  1, true},
    {"k3_s3_p210_op210",           1,  2,  3,  7,  8,  6,  3,  3,  3,  3,  3,  3,  2,  1,  0,  2,  1,  0, false},
    {"k3_s1_p2_batch3",            3,  3,  2,  4,  5,  6,  3,  3,  3,  1,  1,  1,  2,  2,  2,  0,  0,  0, false},
    {"k321_s212_c5_c7",            2,  5,  7,  7,  5,  6,  3,  2,  1,  2,  1,  2,  1,  0,  0,  1,  0,  1, false},
    {"k3_s1_c17_c17",              1, 17, 17,  6,  7,  5,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"first_layer_cin1_s2",        2,  1, 17,  9,  8,  7,  3,  3,  3,  2,  2,  2,  1,  1,  1,  1,  1,  0, false},
    {"last_layer_cout2",           1, 17,  2,  8,  9,  7,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"cout130_crosses_mc",         1,  9,130,  5,  5,  5,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"cin40_k1080_crosses_nc",     1, 40,  3,  4,  4,  4,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"big_spatial_many_tiles",     1,  2,  3, 20, 18, 16,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"one_voxel_k1_cout17",        1,  3, 17,  1,  1,  1,  1,  1,  1,  1,  1,  1,  0,  0,  0,  0,  0,  0, true},
    {"k3_to_one_voxel_cout17",     1,  5, 17,  3,  3,  3,  3,  3,  3,  1,  1,  1,  0,  0,  0,  0,  0,  0, false},
    {"wide_x_k3_cout3",            1,  2,  3,  3,  4, 41,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"wide_x_k3_cout5",            1,  3,  5,  3,  3, 41,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"wide_x_sw2_cout7",           1,  3,  7,  3,  3, 70,  3,  3,  3,  1,  1,  2,  1,  1,  1,  0,  0,  1, false},
    {"k2_s2_c7_c5_batch2",         2,  7,  5,  9,  7,  8,  2,  2,  2,  2,  2,  2,  0,  0,  0,  1,  1,  0, false},
    {"c24_c48_dw_by_rows_s2",      2, 24, 48,  5,  6, 11,  3,  3,  3,  2,  1,  2,  1,  1,  1,  1,  0,  1, false},
    {"k3_s1_p1_c3_c5_batch2",      2,  3,  5,  7,  6,  5,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"k3_s2_p1_odd_c4_c6",         2,  4,  6,  9,  7,  5,  3,  3,  3,  2,  2,  2,  1,  1,  1,  0,  0,  0, false},
    {"k1_c8_c3_cube4",             1,  8,  3,  4,  4,  4,  1,  1,  1,  1,  1,  1,  0,  0,  0,  0,  0,  0, false},
    {"k4_s2_p0_batch3",            3,  2,  4, 10,  9,  8,  4,  4,  4,  2,  2,  2,  0,  0,  0,  0,  0,  0, false},
    {"k3_s2_p1_op1_c5_c3",         2,  5,  3,  4,  3,  5,  3,  3,  3,  2,  2,  2,  1,  1,  1,  1,  1,  1, false},
    {"k3_s1_p1_c4_c4_cube5",       1,  4,  4,  5,  5,  5,  3,  3,  3,  1,  1,  1,  1,  1,  1,  0,  0,  0, false},
    {"k2_s2_p0_c3_c2",             2,  3,  2,  3,  4,  2,  2,  2,  2,  2,  2,  2,  0,  0,  0,  0,  0,  0, false},
  };
  return cases;
}
// clang-format on

}  // namespace vxtest
