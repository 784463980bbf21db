// What the guest's own files say (os-release, DMI) is made to fit the hello's schema before it is sent: a guest whose
// os-release carries an escape sequence or a 300-character name still says hello. And this machine, read for real.
import t from 'tap';
import os from 'node:os';
import { guestText, readGuestSystem } from '../../../agent/transport/guest-system.js';
import { GuestSystemSchema } from '../../../contract/messages.js';
import { validatorAjv } from '../../../packaging/validators/generate-validators.js';

t.test('control characters become spaces, the text is trimmed and bounded, nothing becomes empty', (t) => {
  t.equal(guestText('Evil\u001b[2J OS\u0007', 128), 'Evil [2J OS');
  t.equal(guestText(' x'.repeat(300), 16).length, 16);
  t.equal(guestText(undefined, 8), '');
  t.end();
});

t.test("this machine's guest, read by systeminformation, fits the hello's schema", async (t) => {
  const guest = await readGuestSystem();
  t.ok(guest, 'read within the time allowed');
  t.equal(guest?.kernel, os.release());
  const ajv = validatorAjv();
  t.ok(ajv.validate(GuestSystemSchema, guest), JSON.stringify(ajv.errors));
});

t.test('a reading that does not finish in time gives none, and the hello goes without', async (t) => {
  t.equal(await readGuestSystem(0), null);
});
