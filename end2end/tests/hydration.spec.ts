import { test, expect } from "@playwright/test";

test("pages hydrate and a server function answers", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));

  await page.goto("/login");
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByRole("alert")).toContainText("wrong password");
  expect(errors).toEqual([]);
});

test("the check-in page hydrates with its own smaller bundle, the other pages with the full one", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const wasm: string[] = [];
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.pathname.endsWith(".wasm")) wasm.push(url.pathname);
  });

  await page.goto("/");
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  expect(wasm).toEqual([expect.stringMatching(/^\/pkg\/facegate-checkin\.[0-9a-f]+\.wasm$/)]);

  // The link to the admin pages loads them from the server, with every page's bundle.
  wasm.length = 0;
  await page.getByRole("link", { name: "Admin" }).click();
  await expect(page).toHaveURL(/\/login/);
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  await expect(page.getByLabel("Password")).toBeVisible();
  expect(wasm).toEqual([expect.stringMatching(/^\/pkg\/facegate\.[0-9a-f]+\.wasm$/)]);
  expect(errors).toEqual([]);
});
