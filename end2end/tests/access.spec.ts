// Without an admin session nothing of the admin side is reachable: pages
// redirect to the login, server functions and the JSON API answer 401.
import { expect, test } from "@playwright/test";

import { baseURL, logIn } from "../support/facegate";

const adminPages = ["/admin", "/admin/people", "/admin/log", "/admin/settings"];

test("admin pages redirect to the login page without a session", async ({ page, request }) => {
  for (const url of adminPages) {
    const response = await request.get(url, { maxRedirects: 0 });
    expect(response.status(), url).toBe(303);
    expect(response.headers()["location"], url).toBe("/login");
    expect(await response.text(), url).not.toContain("Register a person");

    await page.goto(url);
    await expect(page).toHaveURL(/\/login$/);
    await expect(page.getByRole("heading", { name: "Admin login" })).toBeVisible();
  }
});

test("admin server functions and the JSON API refuse a caller without a session", async ({
  page,
  playwright,
}) => {
  // The server function's URL, as the People page calls it after a client-side navigation.
  await logIn(page);
  const call = page.waitForRequest((r) => r.method() === "POST" && r.url().includes("/api/list_people"));
  await page.getByRole("link", { name: "People" }).click();
  const listPeople = await call;
  const url = new URL(listPeople.url()).pathname;
  const asThePageSentIt = {
    headers: { "content-type": listPeople.headers()["content-type"] ?? "application/x-www-form-urlencoded" },
    data: listPeople.postData() ?? "",
  };
  // With the admin's cookie the same call succeeds, so a 401 below is about the session only.
  expect((await page.request.post(url, asThePageSentIt)).status()).toBe(200);

  const stranger = await playwright.request.newContext({ baseURL });
  try {
    const refused = await stranger.post(url, asThePageSentIt);
    expect(refused.status()).toBe(401);
    expect(await refused.text()).toContain("log in as the admin first");

    for (const [method, path] of [
      ["GET", "/api/v1/people"],
      ["POST", "/api/v1/people"],
      ["GET", "/api/v1/checkins?format=csv"],
    ]) {
      const response = await stranger.fetch(path, { method });
      expect(response.status(), `${method} ${path}`).toBe(401);
    }
    expect((await stranger.get("/api/v1/health")).status()).toBe(200);
  } finally {
    await stranger.dispose();
  }

  // Logging out ends the session on the server: the old cookie opens nothing.
  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  expect((await page.request.post(url, asThePageSentIt)).status()).toBe(401);
  expect((await page.request.get("/api/v1/people")).status()).toBe(401);
});
