// The main path: the admin enrols a person from photos, the person checks in
// in front of a (fake) camera, a stranger does not, and the log shows it.
import * as path from "node:path";

import {
  enrolled,
  ensureEnrolled,
  expect,
  forget,
  hydrated,
  logIn,
  shotsDir,
  stranger,
  test,
  trainPhotos,
} from "../support/facegate";

// The log test reads the check-in that the welcome test makes.
test.describe.configure({ mode: "serial" });

test("the admin registers a person from uploaded photos", async ({ page, request }) => {
  await forget(request, enrolled.name);
  await logIn(page);

  await page.getByLabel("Name").fill(enrolled.name);
  await page.locator('input[type="file"][name="photo"]').setInputFiles(trainPhotos(enrolled.folder, 4));
  await page.getByRole("button", { name: "Register" }).click();
  await expect(page.locator("#enrol-result")).toContainText(`${enrolled.name} is enrolled with 4 photo(s).`);
  await expect(page.locator("#enrol-result li.ok")).toHaveCount(4);
  await expect(page.getByLabel("Name")).toHaveValue("");
  await page.screenshot({ path: path.join(shotsDir, "register-enrolled-desktop.png"), fullPage: true });

  await page.getByRole("link", { name: "People" }).click();
  await expect(page).toHaveURL(/\/admin\/people$/);
  const person = page.locator(`#people li[data-name="${enrolled.name}"]`);
  await expect(person).toContainText("4 photo(s)");
  await expect(person).toContainText("last check-in: never");
});

test("an enrolled person in front of the camera is welcomed by name", async ({ cameraPage, request }) => {
  await ensureEnrolled(request);
  const page = await cameraPage(enrolled.camera());
  // Milestones on the page's own clock (0 = navigation start): hydration, the
  // first frame sent and answered, and the first greeting.
  await page.addInitScript(() => {
    const marks: Record<string, number> = {};
    (window as any).checkInMarks = marks;
    const mark = (name: string) => (marks[name] ??= performance.now());
    new MutationObserver(() => {
      if (document.body?.dataset.hydrated === "true") mark("hydrated");
      if (document.getElementById("checkin-status")?.textContent?.includes("Welcome")) mark("welcome");
    }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
    const fetch = window.fetch.bind(window);
    window.fetch = async (input, init) => {
      const frame = String(input instanceof Request ? input.url : input).includes("/api/check_in_frame");
      if (frame) mark("first frame sent");
      const response = await fetch(input, init);
      if (frame) mark("first frame answered");
      return response;
    };
  });

  await page.goto("/");
  await hydrated(page);
  await expect(page.locator("#checkin-status")).toContainText(`Welcome, ${enrolled.name}!`);
  await expect(page.locator("#checkin-status")).toContainText("Checked in at");
  await expect(page.locator(".face-box.ok")).toBeVisible();

  const marks: Record<string, number> = await page.evaluate(() => (window as any).checkInMarks);
  expect(Object.keys(marks)).toEqual(
    expect.arrayContaining(["hydrated", "first frame sent", "first frame answered", "welcome"]),
  );
  const steps = Object.entries(marks)
    .sort(([, a], [, b]) => a - b)
    .map(([name, ms]) => `${name} ${Math.round(ms)} ms`)
    .join(", ");
  console.log(`time to first check-in: ${Math.round(marks.welcome)} ms from navigation start (${steps})`);
});

test("a person who is not enrolled is not recognised", async ({ cameraPage, request }) => {
  await ensureEnrolled(request);
  const page = await cameraPage(stranger.camera());
  const answers: { status: string; person_name: string | null; check_in: object | null }[] = [];
  page.on("response", async (response) => {
    if (response.url().includes("/api/check_in_frame") && response.ok()) {
      answers.push(await response.json());
    }
  });

  await page.goto("/");
  await hydrated(page);
  await expect(page.locator("#checkin-status")).toContainText("Not recognised");
  await expect(page.locator(".face-box")).toBeVisible();
  await expect(page.locator(".face-box.ok")).toHaveCount(0);

  // A stranger who stays is logged once as unknown (after several frames), and never greeted.
  await expect.poll(() => answers.filter((a) => a.check_in !== null).length, { timeout: 10_000 }).toBe(1);
  await expect(page.locator("#checkin-status")).toContainText("Not recognised");
  expect(answers.every((a) => a.status === "unknown" && a.person_name === null)).toBe(true);
});

test("the recognised check-in appears in the admin log", async ({ page }) => {
  await logIn(page);

  await page.getByRole("link", { name: "Check-in log" }).click();
  await expect(page).toHaveURL(/\/admin\/log$/);
  const rows = page.locator("#log tbody tr");
  await expect(rows.filter({ hasText: enrolled.name }).first()).toBeVisible();

  // The stranger is there too, as unknown.
  await expect(rows.filter({ hasText: "unknown" }).first()).toBeVisible();

  // Filtered to the person, only their rows stay, and the CSV link carries the filter.
  await page.getByLabel("Person").selectOption({ label: enrolled.name });
  await expect(page.locator("a", { hasText: "Download CSV" })).toHaveAttribute("href", /person_id=/);
  await expect(rows.filter({ hasText: "unknown" })).toHaveCount(0);
  await expect(rows.filter({ hasText: enrolled.name }).first()).toBeVisible();
  const csvLink = await page.locator("a", { hasText: "Download CSV" }).getAttribute("href");
  const csv = await page.request.get(csvLink!);
  expect(csv.status()).toBe(200);
  expect(csv.headers()["content-type"]).toMatch(/^text\/csv/);
  expect(await csv.text()).toContain(enrolled.name);

  await page.getByRole("link", { name: "People" }).click();
  await expect(page.locator(`#people li[data-name="${enrolled.name}"]`)).not.toContainText("last check-in: never");
});
