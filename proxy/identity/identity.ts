// placeholder, replaced below
export interface Identity { spiffeId: string }
