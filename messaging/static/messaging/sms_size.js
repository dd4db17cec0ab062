/* The size of a text as Wavix counts it: the browser's twin of messaging.services.outbound.text_size, and it must
   agree with it exactly. tests/test_sms_size.py runs both over tests/sms_size_cases.json (this file under node) and
   compares the GSM 03.38 tables below with the server's. Loaded by the send page (templates/messaging/send.html). */
(function (root) {
  "use strict";

  // GSM 03.38's basic table: one septet each.
  const GSM7_BASIC = new Set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿" +
      "abcdefghijklmnopqrstuvwxyzäöñüà"
  );
  // Its extension table: two septets each (an escape, then the character).
  const GSM7_EXTENSION = new Set("^{}\\[~]|€\f");
  // The longest text Wavix takes, in the units of each encoding.
  const LIMITS = { gsm7: 1630, ucs2: 670 };
  const SIZES = { gsm7: { single: 160, part: 153 }, ucs2: { single: 70, part: 67 } };

  /* {encoding, units, segments, culprit, limit}: culprit is the first character that forces UCS-2 (null in GSM-7).
     UCS-2 counts UTF-16 code units, as JavaScript strings do: an emoji is two. */
  function smsSize(text) {
    let units = 0;
    let culprit = null;
    for (const ch of text) {  // by code point, so that a culprit emoji is named whole
      if (GSM7_BASIC.has(ch)) units += 1;
      else if (GSM7_EXTENSION.has(ch)) units += 2;
      else { culprit = ch; break; }
    }
    const encoding = culprit === null ? "gsm7" : "ucs2";
    if (encoding === "ucs2") units = text.length;
    const size = SIZES[encoding];
    const segments = units <= size.single ? 1 : Math.ceil(units / size.part);
    return { encoding, units, segments, culprit, limit: LIMITS[encoding] };
  }

  const api = { smsSize, GSM7_BASIC, GSM7_EXTENSION, LIMITS, SIZES };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.smsSize = api;
})(this);
