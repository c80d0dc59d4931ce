// The environments page reads GET /api/envs a page at a time (`?limit=N&after=NEXT`): the whole list is
// megabytes at ten thousand environments, and the page read it again on every change. Where the pager is
// is the trail of `after`s from the first page to the one shown, so Previous goes back without asking the
// controller where it was; a change re-reads only the page shown.
import type { Env } from "../../../src/protocol/controller.ts";

/** Environments per page. */
export const ENV_PAGE_SIZE = 100;

/** A page as GET /api/envs?limit= answers it (its envelope keeps `next` beside `data`, so the API client leaves it whole). */
export interface EnvPageAnswer {
  ok: true;
  data: Env[];
  /** Where the following page starts; null on the last. */
  next: string | null;
}

/** The `after` of each page from the first (null) to the one shown. */
export type PageTrail = readonly (string | null)[];

export const FIRST_PAGE: PageTrail = [null];

export function envPagePath(trail: PageTrail, size = ENV_PAGE_SIZE): string {
  const after = trail[trail.length - 1] ?? null;
  return `/api/envs?limit=${size}${after === null ? "" : `&after=${encodeURIComponent(after)}`}`;
}

export const nextPage = (trail: PageTrail, next: string): PageTrail => [...trail, next];
export const previousPage = (trail: PageTrail): PageTrail => (trail.length > 1 ? trail.slice(0, -1) : trail);

/** "101–200": the shown page's place in the whole list (1-based, as people count). */
export function pageRange(trail: PageTrail, shown: number, size = ENV_PAGE_SIZE): string {
  const first = (trail.length - 1) * size + 1;
  return shown === 0 ? `none from ${first}` : `${first}–${first + shown - 1}`;
}
