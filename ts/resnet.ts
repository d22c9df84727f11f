// Rivera's pre-activation ResNet-v2 encoder and decoder: the builders live in ts/model/build.ts (one
// graph-builder API for every preset), the options and their validation in ts/config.ts. This module
// gathers them under their historical import path.
export { buildResNetV2Decoder, buildResNetV2Encoder } from './model/build.js';
export { RESNET_V2_DEFAULTS, validateResNetV2, type ResNetV2Options } from './config.js';
