/** Management API paths of one resource, its id escaped. */

export const consumerPath = (id: string) => `/consumers/${encodeURIComponent(id)}`;
export const keyPath = (id: string) => `/keys/${encodeURIComponent(id)}`;
export const rotationPath = (id: string) => `/rotations/${encodeURIComponent(id)}`;
