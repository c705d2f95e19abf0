// WebGPU buffer usage and map mode flags, defined once as numbers: the GPUBufferUsage global does not exist in
// Node until the `webgpu` package installs its globals, and these modules load before init().
export const BufferUsage = {
  MAP_READ: 0x01,
  MAP_WRITE: 0x02,
  COPY_SRC: 0x04,
  COPY_DST: 0x08,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;

export const MapMode = {
  READ: 0x1,
  WRITE: 0x2,
} as const;
