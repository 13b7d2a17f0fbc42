import { describe } from "vitest";
import { describeManagementSecurity } from "../support/security";

describe("management API security (every route)", () => {
  describeManagementSecurity();
});
