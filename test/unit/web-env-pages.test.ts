// The environments page's pager (web/src/lib/env-pages.ts): the path of the page shown, the trail of
// positions Next and Previous move along, and the range the page holds.
import assert from "node:assert/strict";
import { test } from "node:test";
import { envPagePath, FIRST_PAGE, nextPage, pageRange, previousPage } from "../../web/src/lib/env-pages.ts";

test("the first page has no position; each Next adds the page's `next`, Previous takes it off", () => {
  assert.equal(envPagePath(FIRST_PAGE), "/api/envs?limit=100");
  const second = nextPage(FIRST_PAGE, "WyIyMDMwIiwiYSJd");
  assert.equal(envPagePath(second), "/api/envs?limit=100&after=WyIyMDMwIiwiYSJd");
  const third = nextPage(second, "a/b+c");
  assert.equal(envPagePath(third, 25), "/api/envs?limit=25&after=a%2Fb%2Bc", "the position is quoted");
  assert.deepEqual(previousPage(third), second);
  assert.deepEqual(previousPage(previousPage(third)), FIRST_PAGE);
  assert.deepEqual(previousPage(FIRST_PAGE), FIRST_PAGE, "no page before the first");
});

test("the range counts from 1, by the page's place and what it holds", () => {
  assert.equal(pageRange(FIRST_PAGE, 100), "1–100");
  assert.equal(pageRange(nextPage(FIRST_PAGE, "x"), 5), "101–105");
  assert.equal(pageRange(nextPage(FIRST_PAGE, "x"), 0), "none from 101");
});
