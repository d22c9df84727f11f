// Evaluation metrics: overlap and surface metrics on binary volumes (the AutoImplant challenge's DSC,
// bDSC, HD, HD95), the exact distance transform they rest on, and statistics of latent codes
// (active units, Gaussian KL, Mardia's test, MIG).

export type { Box, LabelVolume, MaskVolume, Shape3, Spacing3 } from './volume.js';
export { PROBABILITY_THRESHOLD } from './volume.js';
export { distanceTransform, squaredDistanceTransform } from './edt.js';
export { dice, dicePerClass, overlapCounts, type ClassDice, type DiceOptions, type OverlapCounts } from './overlap.js';
export {
  hausdorffDistance,
  hausdorffDistance95,
  percentileLinear,
  surfaceDistanceMetrics,
  surfaceDistances,
  surfaceMask,
  type SurfaceMetrics,
  type SurfaceOptions,
} from './surface.js';
export { boundaryDice, type BoundaryDiceOptions } from './boundary.js';
export type { Matrix, MatrixLike } from './matrix.js';
export {
  activeUnits,
  gaussianKl,
  latentStatistics,
  mardiaTest,
  type LatentStatistics,
  type LatentStatisticsOptions,
  type MardiaResult,
} from './latent.js';
export { mutualInformationGap, type FactorKind, type MigFactor, type MigInput, type MigOptions, type MigResult } from './mig.js';
export { chiSquaredCdf, chiSquaredSf, erfc, gammaP, gammaQ, lnGamma, normalCdf, normalSf } from './special.js';
export { Rng } from './random.js';
