// Injected by web/build.mjs as the global `Buffer` of the app bundle: ts/data's NIfTI and NRRD codecs use
// Node's Buffer (alloc, concat, latin1 text); the `buffer` package is the standard browser implementation.
export { Buffer } from 'buffer';
